"""Serving predictions of many (model, row) pairs, one call per distinct model.

Global models are one object per (timeframe, kind), shared by every asset's ensemble
(``base.shared_loads``); each asset weighs them its own way. A batch of many assets therefore
calls each shared member once on all their rows and combines per asset, which gives exactly what
each ensemble's ``predict_last`` gives alone. Models that read more than one row (the LSTM, or an
ensemble holding one) are called one by one.
"""

from __future__ import annotations

import numpy as np

from crypto_predictor.models.ensemble import EnsembleModel


def _terms(model) -> list | None:
    """(member, weight) terms of a row-wise model (weight None: the model alone), or None."""
    if isinstance(model, EnsembleModel):
        members = list(zip(model.members_, model.weights_))
        return members if all(m.context_rows == 1 for m, _ in members) else None
    return [(model, None)] if model.context_rows == 1 else None


def predict_each(models, inputs) -> list[float]:
    """``models[i].predict_last(inputs[i])`` for every i (inputs: arrays already checked against the model's
    features, as serving builds them), sharing one call per distinct row-wise model."""
    plans, calls = [], {}  # calls: id(model) -> (model, [row arrays])
    for model, values in zip(models, inputs):
        terms = _terms(model)
        if terms is None:
            plans.append(None)
            continue
        positions = []
        for member, weight in terms:
            model_rows = calls.setdefault(id(member), (member, []))[1]
            positions.append((id(member), len(model_rows), weight))
            model_rows.append(values[-1])
        plans.append(positions)
    outputs = {key: member._predict_rows(np.stack(rows)) for key, (member, rows) in calls.items()}
    out = []
    for model, values, positions in zip(models, inputs, plans):
        if positions is None:
            out.append(float(model.predict_last(values)))
        elif positions[0][2] is None:
            out.append(float(outputs[positions[0][0]][positions[0][1]]))
        else:  # the ensemble's own order of operations: 0 + w1 * p1 + w2 * p2 ...
            out.append(float(sum(w * outputs[key][i] for key, i, w in positions)))
    return out
