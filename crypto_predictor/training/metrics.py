"""Metrics of log-return forecasts, always beside the naive (no-change) forecast.

Crypto prices are close to a random walk, so every figure is reported next to the naive
forecast (log return 0, i.e. "the price stays where it is"): MASE below 1 beats it.
"""

from __future__ import annotations

import math

import numpy as np

from crypto_predictor.calibration import level_key
from crypto_predictor.errors import InvalidInput


def naive_forecast(n: int) -> np.ndarray:
    """The no-change forecast: a log return of 0 for every row."""
    return np.zeros(int(n))


def _directional(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, int]:
    """Sign agreement. Rows whose realised return is exactly 0 have no direction and are left
    out; a prediction of exactly 0 calls no direction and scores 0.5 (a coin flip), so the naive
    forecast scores 0.5."""
    t, p = np.sign(y_true), np.sign(y_pred)
    keep = t != 0
    if not keep.any():
        return math.nan, 0
    score = np.where(p[keep] == 0, 0.5, (p[keep] == t[keep]).astype(float))
    return float(score.mean()), int(keep.sum())


def as_1d(name, values, n=None) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if n is not None and len(arr) != n:
        raise InvalidInput(f"{name} has {len(arr)} values, expected {n}")
    return arr


def metrics(y_true, y_pred, lower80=None, upper80=None, lower95=None, upper95=None, confidence=None,
            price=None) -> dict:
    """Point, direction and interval metrics of log-return predictions.

    mase = mae / naive_mae (naive MAE = mean |y_true|; < 1 beats no-change); r2_oos =
    1 - SSE / SSE_naive. top_decile_directional_accuracy: the ceil(10%) rows with the highest
    ``confidence`` (ties, or confidence None, ranked by |prediction|). Intervals are in
    log-return units; rows with a NaN bound are left out of coverage (coverage_n_<L> counts the
    rest). interval_width_<L>_rel = mean(exp(upper) - exp(lower)) is the width as a fraction of
    the current price; with ``price`` also interval_width_<L>_price (price units).
    """
    y_true = as_1d("y_true", y_true)
    n = len(y_true)
    y_pred = as_1d("y_pred", y_pred, n)
    if n == 0:
        raise InvalidInput("metrics need at least one row")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise InvalidInput("y_true and y_pred must be finite (drop rows whose target is not realised)")
    err = y_true - y_pred
    mae, naive_mae = float(np.mean(np.abs(err))), float(np.mean(np.abs(y_true)))
    sse, sse_naive = float(np.sum(err**2)), float(np.sum(y_true**2))
    da, da_n = _directional(y_true, y_pred)
    rank = np.abs(y_pred) if confidence is None else as_1d("confidence", confidence, n)
    k = max(1, math.ceil(0.1 * n))
    # lexsort: last key is primary; NaN confidence sorts last (lowest priority) after negation.
    primary = np.where(np.isfinite(rank), -rank, np.inf)
    top = np.lexsort((-np.abs(y_pred), primary))[:k]
    top_da, _ = _directional(y_true[top], y_pred[top])
    out = {
        "n": n, "mae": mae, "rmse": math.sqrt(sse / n), "naive_mae": naive_mae,
        "mase": mae / naive_mae if naive_mae > 0 else math.nan,
        "r2_oos": 1 - sse / sse_naive if sse_naive > 0 else math.nan,
        "directional_accuracy": da, "directional_n": da_n,
        "top_decile_directional_accuracy": top_da, "top_decile_n": k,
    }
    price = None if price is None else as_1d("price", price, n)
    for level, lo, hi in ((0.8, lower80, upper80), (0.95, lower95, upper95)):
        key = level_key(level)
        out.update({f"coverage_{key}": math.nan, f"coverage_n_{key}": 0, f"interval_width_{key}": math.nan,
                    f"interval_width_{key}_rel": math.nan})
        if lo is None or hi is None:
            continue
        lo, hi = as_1d(f"lower{key}", lo, n), as_1d(f"upper{key}", hi, n)
        ok = np.isfinite(lo) & np.isfinite(hi)
        out[f"coverage_n_{key}"] = int(ok.sum())
        if not ok.any():
            continue
        out[f"coverage_{key}"] = float(np.mean((y_true[ok] >= lo[ok]) & (y_true[ok] <= hi[ok])))
        out[f"interval_width_{key}"] = float(np.mean(hi[ok] - lo[ok]))
        rel = np.exp(hi[ok]) - np.exp(lo[ok])
        out[f"interval_width_{key}_rel"] = float(np.mean(rel))
        if price is not None:
            out[f"interval_width_{key}_price"] = float(np.mean(price[ok] * rel))
    return out


def evaluate_predictions(y_true, y_pred, name: str = "model", intervals: dict | None = None,
                         confidence=None, naive_intervals: dict | None = None, price=None) -> list[dict]:
    """Result-table rows: one for the model, one for "naive" (always present, never omitted).

    ``intervals`` / ``naive_intervals``: dicts with lower80, upper80, lower95, upper95 arrays.
    """
    y_true = as_1d("y_true", y_true)
    bounds = ("lower80", "upper80", "lower95", "upper95")
    pick = lambda d: {b: (d or {}).get(b) for b in bounds}  # noqa: E731
    model_row = {"model": name, **metrics(y_true, y_pred, **pick(intervals), confidence=confidence, price=price)}
    naive_row = {"model": "naive", **metrics(y_true, naive_forecast(len(y_true)), **pick(naive_intervals),
                                             price=price)}
    return [model_row, naive_row]
