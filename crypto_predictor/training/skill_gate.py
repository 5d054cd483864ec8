"""The skill gate: how much of a model's forecast to serve, learned from its out-of-sample errors.

The served forecast is ``k * model`` with k in [0, 1]: k = 0 is the naive "no change"
forecast. k is chosen on realised out-of-sample errors only (the walk-forward predictions of
earlier folds), as the value on a grid that minimises the mean absolute error, and kept only
when the gain over naive is clearly more than noise and still there lately: a one-sided t
statistic of |y| - |y - k p| of at least ``T_MIN`` (5) over all known rows and of at least
``T_RECENT`` (3) over their newer half, each computed on every ``horizon``-th row (overlapping
targets are not independent; a 24 h target on hourly rows shares 23 hours with the next).
Anything less, or too few independent rows to tell, serves naive. A model without skill is
therefore shrunk to "no change" rather than served (Puoti et al. 2025: naive wins on the
majors when nothing guards it).

The thresholds are measured (``bench/bench_gate.py``, README "The skill gate"): judged on the six
months after each of three cut dates, t >= 3 alone kept 29 of 60 hourly global forecasts and 17
of them then did worse than no change; t >= 5 with t >= 3 on the newer half kept none.
"""

from __future__ import annotations

import numpy as np

from crypto_predictor.errors import InvalidInput

GRID = np.round(np.linspace(0.0, 1.0, 21), 2)
T_MIN = 5.0  # over all known rows; at 3 the kept hourly edge did not last (bench_gate)
T_RECENT = 3.0  # over the newer half of them: an edge that has faded is not served
MIN_INDEPENDENT = 30  # fewer non-overlapping errors than this in either half cannot show skill


def shrink_factor(y_true, y_pred, horizon: int) -> tuple[float, float]:
    """(k, t): the shrinkage factor to serve and the t statistic of its gain over naive.

    ``y_true``/``y_pred``: realised and predicted log returns of out-of-sample rows in time
    order, on a regular grid; ``horizon``: rows each target spans.
    """
    k, t, t_newer = best_shrink(y_true, y_pred, horizon)
    return (k, t) if t >= T_MIN and t_newer >= T_RECENT else (0.0, t)


def best_shrink(y_true, y_pred, horizon: int) -> tuple[float, float, float]:
    """(k, t, t_newer) before any threshold: the grid value minimising MAE on every ``horizon``-th
    row, the t statistic of its gain over naive there, and over the newer half of those rows;
    (0, 0, 0) when naive is best or there are too few independent rows to tell."""
    y = np.asarray(y_true, dtype=float).reshape(-1)
    p = np.asarray(y_pred, dtype=float).reshape(-1)
    if len(y) != len(p):
        raise InvalidInput(f"y_true has {len(y)} rows but y_pred has {len(p)}")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise InvalidInput("the skill gate needs finite realised and predicted returns")
    step = max(int(horizon), 1)
    y, p = y[::step], p[::step]
    if len(y) < 2 * MIN_INDEPENDENT:
        return 0.0, 0.0, 0.0
    # MAE of every k on the grid at once: rows x grid.
    errors = np.abs(y[:, None] - p[:, None] * GRID[None, :])
    best = int(np.argmin(errors.mean(axis=0)))
    if GRID[best] == 0.0:
        return 0.0, 0.0, 0.0
    gain = np.abs(y) - errors[:, best]
    return float(GRID[best]), t_stat(gain), t_stat(gain[len(gain) // 2:])


def t_stat(gain: np.ndarray) -> float:
    """One-sample t statistic of the mean gain (0 when it cannot be computed)."""
    if len(gain) < 2:
        return 0.0
    sd = gain.std(ddof=1)
    return float(gain.mean() / (sd / np.sqrt(len(gain)))) if sd > 0 else 0.0


def gated_predictions(y_true, y_pred, positions, folds, horizon: int) -> tuple[np.ndarray, list[dict]]:
    """Walk-forward served predictions: fold f's k from the rows realised before fold f starts.

    Returns (k * prediction per row, [{"fold", "shrink", "t", "n_known"}] per fold). Fold 0,
    with no earlier errors, serves naive.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    pos = np.asarray(positions)
    fold = np.asarray(folds)
    out = np.zeros(len(p))
    per_fold = []
    for f in sorted(np.unique(fold)):
        here = fold == f
        known = (pos + horizon <= pos[here].min()) & ~here
        k, t = shrink_factor(y[known], p[known], horizon)
        out[here] = k * p[here]
        per_fold.append({"fold": int(f), "shrink": k, "t": round(t, 3), "n_known": int(known.sum())})
    return out, per_fold
