"""Simple interval baselines that the served intervals have to beat on the interval score.

Both put the naive point forecast (log return 0) inside empirical quantiles of realised h-step
log returns, using only returns known at prediction time (row s's return is known from
s + horizon on):
- ``baseline_quantile``: the trailing BASELINE_DAYS (30) days of returns before each row;
- ``baseline_static``: every return known before the fold's first test row (the whole training
  window), one interval per fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crypto_predictor.calibration import level_key

BASELINES = ("baseline_quantile", "baseline_static")
BASELINE_DAYS = 30
# Rows that are not forecasts: the yardstick and the baselines (never a served or "best" kind).
REFERENCE_ROWS = ("naive",) + BASELINES


def quantile_baseline(y, positions, horizon: int, window: int, levels) -> dict[str, np.ndarray]:
    """lower<L>/upper<L> per query position from the latest ``window`` known returns (NaN before
    ``window`` of them are known). ``y``: the whole series' h-step returns, ``positions`` index it."""
    series = pd.Series(np.asarray(y, dtype=float))
    at = np.asarray(positions, dtype=np.int64) - int(horizon)  # the newest return known at each query
    out = {}
    for level in levels:
        alpha = 1.0 - level
        for side, q in (("lower", alpha / 2), ("upper", 1 - alpha / 2)):
            rolled = series.rolling(int(window), min_periods=int(window)).quantile(q).to_numpy()
            out[f"{side}{level_key(level)}"] = np.where(at >= 0, rolled[np.clip(at, 0, None)], np.nan)
    return out


def static_baseline(y, positions, splits, horizon: int, levels) -> dict[str, np.ndarray]:
    """lower<L>/upper<L> per query position: for the fold whose test rows hold the position, the
    quantiles of every return known before that fold's first test row."""
    y = np.asarray(y, dtype=float)
    positions = np.asarray(positions, dtype=np.int64)
    out = {f"{side}{level_key(lv)}": np.full(len(positions), np.nan) for lv in levels for side in ("lower", "upper")}
    for _, test in splits:
        here = np.isin(positions, test)
        known = y[: max(0, int(test[0]) - int(horizon) + 1)]
        known = known[np.isfinite(known)]
        if len(known) < 2 or not here.any():
            continue
        for level in levels:
            alpha = 1.0 - level
            lo, hi = np.quantile(known, [alpha / 2, 1 - alpha / 2])
            out[f"lower{level_key(level)}"][here] = lo
            out[f"upper{level_key(level)}"][here] = hi
    return out


def on_rows_of(bounds: dict, reference: dict) -> dict:
    """``bounds`` with NaN wherever ``reference`` (the model's intervals) has none, so a baseline
    is scored on exactly the rows the model is."""
    out = {}
    for name, values in bounds.items():
        ref = reference.get(name)
        out[name] = values if ref is None else np.where(np.isfinite(ref), values, np.nan)
    return out
