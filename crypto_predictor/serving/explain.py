"""Why a pair predicted what it did: the top feature contributions of its newest prediction.

Contributions (``models.contributions``) are to the model's forecast of the log return, with the
ensemble's member weights applied; the served forecast is that times ``1 - naive_weight`` (the skill
gate's shrinkage toward no-change), so with ``naive_weight`` 1 the model is explained but not served.
Computed once per (version, asset, timeframe, newest bar) and kept in a small bounded memo: the
inputs are the same for every request until the next candle.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from crypto_predictor.models.contributions import contributions
from crypto_predictor.timeutil import iso

TOP = 8
MEMO_ENTRIES = 1024
OMITTED_WHY = {"lstm": "the LSTM has no exact additive explanation; its weighted forecast is in base_value"}


def explanation(pair, inputs, top: int = TOP) -> dict:
    values = inputs.values if inputs.values is not None else inputs.X_tail.to_numpy(dtype=float)
    part = contributions(pair.model, values)
    order = np.argsort(-np.abs(part.values), kind="stable")[:top]
    model_return = part.bias + float(part.values.sum())
    members = pair.model.member_weights() if pair.model.kind == "ensemble" else {pair.model.kind: 1.0}
    return {
        "data_as_of": iso(inputs.bar_time + pair.step),  # the candle it explains, as in the prediction
        "model": pair.model.kind,
        "member_weights": {k: round(w, 6) for k, w in members.items()},
        "naive_weight": round(1.0 - float(pair.shrink), 6),
        "base_value": float(part.bias),
        "model_log_return": model_return,
        "served_log_return": float(pair.shrink) * model_return if pair.shrink else 0.0,
        "contributions": [{"feature": pair.features[i], "value": float(values[-1, i]),
                           "contribution": float(part.values[i])} for i in order],
        "other_features": float(part.values.sum() - part.values[order].sum()),
        "omitted": [{"kind": k, "why": OMITTED_WHY.get(k, "no additive explanation for this kind")}
                    for k in part.omitted],
    }


class Explainer:
    """``explain(pair, inputs)``, memoised per (version, asset, timeframe, newest bar)."""

    def __init__(self, entries: int = MEMO_ENTRIES):
        self.entries = int(entries)
        self._memo: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # explanations actually computed (the rest came from the memo)

    def explain(self, pair, inputs) -> dict:
        key = (pair.version, pair.asset, pair.timeframe, inputs.bar_time)
        with self._lock:
            found = self._memo.get(key)
            if found is not None:
                self._memo.move_to_end(key)
                return found
        made = explanation(pair, inputs)
        with self._lock:
            self.computed += 1
            self._memo[key] = made
            while len(self._memo) > self.entries:
                self._memo.popitem(last=False)
        return made
