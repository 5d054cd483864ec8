"""Metrics of log-return forecasts, always beside the naive (no-change) forecast.

Crypto prices are close to a random walk, so every figure is reported next to the naive
forecast (log return 0, i.e. "the price stays where it is"): MASE below 1 beats it.
"""

from __future__ import annotations

import math

import numpy as np

from crypto_predictor.calibration import causal_volatility, level_key
from crypto_predictor.confidence import direction_correct
from crypto_predictor.errors import InvalidInput

RELIABILITY_BINS = 10
# Coverage's standard error from batch means: at most SE_BLOCKS contiguous blocks of rows, each at least
# SE_BLOCK_HORIZONS horizons long (overlapping targets and volatility clusters make neighbouring misses
# move together, so the binomial formula would claim several times the precision); fewer than
# SE_MIN_BLOCKS blocks give no figure.
SE_BLOCKS = 20
SE_BLOCK_HORIZONS = 5
SE_MIN_BLOCKS = 5


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


def interval_score(y, lower, upper, alpha: float) -> np.ndarray:
    """Interval score of central (1 - alpha) intervals per row (Gneiting & Raftery 2007): the width
    plus 2/alpha times the distance by which y falls outside; lower is better."""
    y, lower, upper = (np.asarray(v, dtype=float) for v in (y, lower, upper))
    return (upper - lower) + (2.0 / alpha) * (np.maximum(lower - y, 0.0) + np.maximum(y - upper, 0.0))


def block_se(values, horizon: int = 1) -> float:
    """Standard error of the mean of time-ordered ``values`` by batch means: the spread of the means of
    contiguous blocks (SE_BLOCKS at most, each SE_BLOCK_HORIZONS x ``horizon`` rows at least) over
    sqrt(blocks); NaN with fewer than SE_MIN_BLOCKS blocks."""
    values = np.asarray(values, dtype=float)
    blocks = min(SE_BLOCKS, len(values) // (SE_BLOCK_HORIZONS * max(int(horizon), 1)))
    if blocks < SE_MIN_BLOCKS:
        return math.nan
    means = [b.mean() for b in np.array_split(values, blocks)]
    return float(np.std(means, ddof=1) / math.sqrt(blocks))


def vol_terciles(vol) -> np.ndarray:
    """0 / 1 / 2 per row: the row's volatility at prediction time in the low, middle or high third of
    these rows (cut at their 1/3 and 2/3 quantiles); -1 where it is unknown."""
    vol = np.asarray(vol, dtype=float)
    out = np.full(len(vol), -1)
    ok = np.isfinite(vol)
    if ok.sum() >= 3:
        cuts = np.quantile(vol[ok], [1 / 3, 2 / 3])
        out[ok] = np.searchsorted(cuts, vol[ok], side="right")
    return out


def prediction_volatility(scale, price, horizon: int, pos) -> np.ndarray | None:
    """Volatility at prediction time of the rows at ``pos``, for conditional coverage: the intervals'
    own scale of those rows when they are normalised, else the EWMA estimate from the closes (span
    max(24, 3 h)); None without either."""
    if scale is not None:
        return np.asarray(scale, dtype=float)
    if price is None:
        return None
    span = max(24, 3 * int(horizon))
    return causal_volatility(price, max(int(horizon), 1), span, min_periods=min(span, 48))[pos]


def direction_scores(y_true, y_pred, confidence) -> dict:
    """Brier score of the direction probability (``confidence``: the chance the predicted direction
    is right; a coin flip scores 0.25), a RELIABILITY_BINS-bin reliability table (mean predicted,
    observed hit rate, count per bin of confidence) and the slope of hits on confidence (1 =
    calibrated in slope). Rows without a direction (prediction or outcome exactly 0) are left out."""
    correct = direction_correct(y_true, y_pred)
    ok = np.isfinite(correct) & np.isfinite(confidence)
    c, hit = confidence[ok], correct[ok]
    out = {"brier": float(np.mean((c - hit) ** 2)) if ok.any() else math.nan, "brier_n": int(ok.sum()),
           "reliability_slope": math.nan, "reliability": []}
    if len(c) > 1 and np.var(c) > 0:
        out["reliability_slope"] = float(np.cov(c, hit, bias=True)[0, 1] / np.var(c))
    bins = np.minimum((c * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    for b in range(RELIABILITY_BINS):
        m = bins == b
        out["reliability"].append({"bin": [b / RELIABILITY_BINS, (b + 1) / RELIABILITY_BINS], "n": int(m.sum()),
                                   "predicted": float(c[m].mean()) if m.any() else None,
                                   "observed": float(hit[m].mean()) if m.any() else None})
    return out


def as_1d(name, values, n=None) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if n is not None and len(arr) != n:
        raise InvalidInput(f"{name} has {len(arr)} values, expected {n}")
    return arr


def metrics(y_true, y_pred, lower80=None, upper80=None, lower95=None, upper95=None, confidence=None,
            price=None, tercile=None, horizon: int = 1) -> dict:
    """Point, direction and interval metrics of log-return predictions.

    mase = mae / naive_mae (naive MAE = mean |y_true|; < 1 beats no-change); r2_oos =
    1 - SSE / SSE_naive. top_decile_directional_accuracy: the ceil(10%) rows with the highest
    ``confidence`` (ties, or confidence None, ranked by |prediction|). Intervals are in
    log-return units; rows with a NaN bound are left out of coverage (coverage_n_<L> counts the
    rest). interval_width_<L>_rel = mean(exp(upper) - exp(lower)) is the width as a fraction of
    the current price; with ``price`` also interval_width_<L>_price (price units).
    interval_score_<L>: mean ``interval_score`` (log-return units). ``tercile`` (``vol_terciles``):
    coverage_<L>_by_vol lists the coverage in the low, middle and high volatility third (n_by_vol
    their rows). coverage_<L>_se (and _by_vol_se): its standard error (``block_se``, rows in time order,
    ``horizon`` rows per target). With ``confidence``: ``direction_scores`` (brier, reliability).
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
    if confidence is not None:
        out.update(direction_scores(y_true, y_pred, as_1d("confidence", confidence, n)))
    price = None if price is None else as_1d("price", price, n)
    tercile = None if tercile is None else np.asarray(tercile).reshape(-1)
    if tercile is not None:
        out["n_by_vol"] = [int((tercile == g).sum()) for g in range(3)]
    for level, lo, hi in ((0.8, lower80, upper80), (0.95, lower95, upper95)):
        key = level_key(level)
        if lo is None or hi is None:
            out.update({f"coverage_{key}": math.nan, f"coverage_n_{key}": 0, f"coverage_{key}_se": math.nan,
                        f"interval_width_{key}": math.nan, f"interval_width_{key}_rel": math.nan,
                        f"interval_score_{key}": math.nan})
        else:
            out.update(_interval_metrics(y_true, level, as_1d(f"lower{key}", lo, n), as_1d(f"upper{key}", hi, n),
                                         price, tercile, horizon))
    return out


def _interval_metrics(y_true, level: float, lo, hi, price, tercile, horizon: int) -> dict:
    key = level_key(level)
    ok = np.isfinite(lo) & np.isfinite(hi)
    out = {f"coverage_{key}": math.nan, f"coverage_n_{key}": int(ok.sum()), f"coverage_{key}_se": math.nan,
           f"interval_width_{key}": math.nan, f"interval_width_{key}_rel": math.nan, f"interval_score_{key}": math.nan}
    if not ok.any():
        return out
    inside = (y_true >= lo) & (y_true <= hi)
    rel = np.exp(hi[ok]) - np.exp(lo[ok])
    out.update({f"coverage_{key}": float(np.mean(inside[ok])), f"coverage_{key}_se": block_se(inside[ok], horizon),
                f"interval_width_{key}": float(np.mean(hi[ok] - lo[ok])),
                f"interval_width_{key}_rel": float(np.mean(rel)),
                f"interval_score_{key}": float(np.mean(interval_score(y_true[ok], lo[ok], hi[ok], 1 - level)))})
    if price is not None:
        out[f"interval_width_{key}_price"] = float(np.mean(price[ok] * rel))
    if tercile is not None:
        thirds = [inside[ok & (tercile == g)] for g in range(3)]
        out[f"coverage_{key}_by_vol"] = [float(np.mean(t)) if len(t) else math.nan for t in thirds]
        out[f"coverage_{key}_by_vol_se"] = [block_se(t, horizon) for t in thirds]
    return out


def evaluate_predictions(y_true, y_pred, name: str = "model", intervals: dict | None = None,
                         confidence=None, naive_intervals: dict | None = None, price=None,
                         baselines: dict | None = None, tercile=None, horizon: int = 1) -> list[dict]:
    """Result-table rows: one for the model, one for "naive" (always present, never omitted), then
    one per baseline (``baselines``: name -> intervals around the naive point, training/baselines.py).

    ``intervals`` / ``naive_intervals``: dicts with lower80, upper80, lower95, upper95 arrays; rows in
    time order, ``horizon`` rows per target (``metrics``).
    """
    y_true = as_1d("y_true", y_true)
    bounds = ("lower80", "upper80", "lower95", "upper95")
    pick = lambda d: {b: (d or {}).get(b) for b in bounds}  # noqa: E731
    naive = naive_forecast(len(y_true))
    common = {"price": price, "tercile": tercile, "horizon": horizon}
    rows = [{"model": name, **metrics(y_true, y_pred, **pick(intervals), confidence=confidence, **common)},
            {"model": "naive", **metrics(y_true, naive, **pick(naive_intervals), **common)}]
    for baseline, bounds_of in (baselines or {}).items():
        rows.append({"model": baseline, **metrics(y_true, naive, **pick(bounds_of), **common)})
    return rows
