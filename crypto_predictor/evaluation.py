"""Walk-forward evaluation against the naive (no-change) forecast.

Crypto prices are close to a random walk, so every figure here is measured on rows the model
never saw, next to the naive forecast (log return 0, i.e. "the price stays where it is").
Rows are equally spaced time steps (hours for hourly candles); ``horizon`` counts rows, and
row t's target is the log return from t to t + horizon, known only at row t + horizon.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crypto_predictor.calibration import (DEFAULT_LEVELS, DirectionCalibrator, RollingConformal, direction_correct,
                                          direction_score, level_key, rolling_intervals)
from crypto_predictor.errors import InvalidInput


def walk_forward_splits(n: int, n_folds: int, horizon: int, min_train: int, test_size: int | None = None,
                        expanding: bool = True, max_train: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Chronological (train_idx, test_idx) pairs whose test folds tile the tail of 0..n-1.

    Purging: at least ``horizon`` rows lie strictly between the last train row and the first
    test row (test[0] - train[-1] - 1 >= horizon), so no train target window reaches a test
    row. ``test_size`` defaults to splitting everything after the first min_train + horizon rows
    into ``n_folds`` equal folds (leftover rows join the first training window). Expanding
    origin trains on everything before the purge gap (capped to the latest ``max_train`` rows if
    given); rolling origin (expanding=False) on the latest ``max_train or min_train`` rows.
    """
    for name, val, low in (("n", n, 1), ("n_folds", n_folds, 1), ("horizon", horizon, 0), ("min_train", min_train, 1)):
        if not isinstance(val, (int, np.integer)) or val < low:
            raise InvalidInput(f"{name} must be an integer >= {low}, got {val!r}")
    if max_train is not None and max_train < min_train:
        raise InvalidInput(f"max_train ({max_train}) must be >= min_train ({min_train})")
    available = n - min_train - horizon
    if test_size is None:
        test_size = available // n_folds
    elif not isinstance(test_size, (int, np.integer)) or test_size < 1:
        raise InvalidInput(f"test_size must be an integer >= 1, got {test_size!r}")
    need = min_train + horizon + n_folds * max(test_size, 1)
    if test_size < 1 or n < need:
        raise InvalidInput(
            f"series too short for walk-forward: n={n}, need at least {need} rows "
            f"(min_train {min_train} + gap {horizon} + {n_folds} folds x {max(test_size, 1)} test rows)",
            n=n, needed=need)
    window = max_train if max_train is not None else (None if expanding else min_train)
    splits = []
    for k in range(n_folds):
        start = n - (n_folds - k) * test_size
        train_end = start - horizon  # exclusive: the last train row is start - horizon - 1
        train_start = 0 if window is None else max(0, train_end - window)
        splits.append((np.arange(train_start, train_end), np.arange(start, start + test_size)))
    return splits


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


def _as_1d(name, values, n=None) -> np.ndarray:
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
    y_true = _as_1d("y_true", y_true)
    n = len(y_true)
    y_pred = _as_1d("y_pred", y_pred, n)
    if n == 0:
        raise InvalidInput("metrics need at least one row")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise InvalidInput("y_true and y_pred must be finite (drop rows whose target is not realised)")
    err = y_true - y_pred
    mae, naive_mae = float(np.mean(np.abs(err))), float(np.mean(np.abs(y_true)))
    sse, sse_naive = float(np.sum(err**2)), float(np.sum(y_true**2))
    da, da_n = _directional(y_true, y_pred)
    rank = np.abs(y_pred) if confidence is None else _as_1d("confidence", confidence, n)
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
    price = None if price is None else _as_1d("price", price, n)
    for level, lo, hi in ((0.8, lower80, upper80), (0.95, lower95, upper95)):
        key = level_key(level)
        out.update({f"coverage_{key}": math.nan, f"coverage_n_{key}": 0, f"interval_width_{key}": math.nan,
                    f"interval_width_{key}_rel": math.nan})
        if lo is None or hi is None:
            continue
        lo, hi = _as_1d(f"lower{key}", lo, n), _as_1d(f"upper{key}", hi, n)
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
    y_true = _as_1d("y_true", y_true)
    bounds = ("lower80", "upper80", "lower95", "upper95")
    pick = lambda d: {b: (d or {}).get(b) for b in bounds}  # noqa: E731
    model_row = {"model": name, **metrics(y_true, y_pred, **pick(intervals), confidence=confidence, price=price)}
    naive_row = {"model": "naive", **metrics(y_true, naive_forecast(len(y_true)), **pick(naive_intervals),
                                             price=price)}
    return [model_row, naive_row]


@dataclass
class BacktestResult:
    """Everything a walk-forward run produced, all out-of-sample.

    ``predictions``: one row per test row (position, index label, fold, y_true, y_pred,
    lower/upper per level, n_history, error_scale, confidence, score, and scale when
    normalised). ``summary``: model and naive rows over rows with intervals where relevant;
    ``n_without_interval`` rows lacked enough known errors.
    """

    folds: list[dict]
    predictions: pd.DataFrame
    summary: list[dict]
    n_without_interval: int
    conformal: RollingConformal
    calibrator: DirectionCalibrator | None = None


def _rows(obj, idx):
    return obj.iloc[idx] if hasattr(obj, "iloc") else obj[idx]


def backtest(make_model, X, y, horizon: int, n_folds: int, min_train: int, test_size: int | None = None,
             expanding: bool = True, max_train: int | None = None, conformal: RollingConformal | None = None,
             scale=None, calibration_window: int | None = 5000, make_calibrator=None,
             name: str = "model", price=None) -> BacktestResult:
    """Fit ``make_model()`` on each train fold, predict its test fold, score everything causally.

    Intervals for a test row t come from the residuals of earlier out-of-sample predictions
    (earlier folds and earlier in the same fold) known by t (s + horizon <= t). ``conformal``
    defaults to RollingConformal.for_horizon(horizon), volatility-normalised when ``price``
    (the close of each row, contiguous rows) is given. Rows with fewer than its
    ``min_history`` known residuals get NaN bounds and are excluded from coverage (counted in
    n_without_interval). The DirectionCalibrator for fold k is fitted on the latest
    ``calibration_window`` out-of-sample rows known before fold k starts; fold 0 gets the base
    rate 0.5. ``scale``: explicit causal volatility per row (overrides the one from price).
    The returned ``calibrator`` is refitted on the latest rows, ready for serving.
    """
    y_arr = _as_1d("y", y)
    n = len(y_arr)
    if len(X) != n:
        raise InvalidInput(f"X has {len(X)} rows but y has {n}")
    if not np.all(np.isfinite(y_arr)):
        raise InvalidInput("y must be finite: drop the last rows whose target is not realised yet")
    price_full = None if price is None else _as_1d("price", price, n)
    make_calibrator = make_calibrator or (lambda: DirectionCalibrator(horizon=max(int(horizon), 1)))
    if conformal is None:
        conformal = RollingConformal.for_horizon(horizon, normalise=price is not None)
    if conformal.horizon != horizon:
        raise InvalidInput(f"conformal horizon {conformal.horizon} differs from backtest horizon {horizon}")
    if scale is not None:
        scale_arr = _as_1d("scale", scale, n)
    elif conformal.vol_span is not None:
        if price_full is None:
            raise InvalidInput("volatility-normalised conformal needs price (close per row) or scale")
        scale_arr = conformal.scale(price_full)
    else:
        scale_arr = None
    splits = walk_forward_splits(n, n_folds, horizon, min_train, test_size, expanding, max_train)

    pos_parts, pred_parts, fold_parts, timings = [], [], [], []
    for k, (tr, te) in enumerate(splits):
        model = make_model()
        t0 = time.perf_counter()
        model.fit(_rows(X, tr), y_arr[tr])
        t1 = time.perf_counter()
        pred = _as_1d("predictions", model.predict(_rows(X, te)), len(te))
        timings.append((t1 - t0, time.perf_counter() - t1))
        if not np.all(np.isfinite(pred)):
            raise InvalidInput(f"model produced non-finite predictions in fold {k}")
        pos_parts.append(te)
        pred_parts.append(pred)
        fold_parts.append(np.full(len(te), k))
    pos = np.concatenate(pos_parts)
    y_pred = np.concatenate(pred_parts)
    fold = np.concatenate(fold_parts)
    y_true = y_arr[pos]

    sc = None if scale_arr is None else scale_arr[pos]
    iv = conformal.batch(pos, y_true, y_pred, scale=sc)
    naive_iv = conformal.batch(pos, y_true, np.zeros_like(y_true), scale=sc)
    score = direction_score(y_pred, iv["error_scale"])
    correct = direction_correct(y_true, y_pred)
    confidence = np.full(len(pos), np.nan)
    for k, (_, te) in enumerate(splits):
        known = np.flatnonzero(pos + horizon <= te[0])
        if calibration_window is not None:
            known = known[-calibration_window:]
        fold_cal = make_calibrator().fit(score[known], correct[known])
        confidence[fold == k] = fold_cal.predict_proba(score[fold == k])

    # The calibrator handed back for serving sees the latest realised out-of-sample rows.
    tail = np.arange(len(pos)) if calibration_window is None else np.arange(len(pos))[-calibration_window:]
    calibrator = make_calibrator().fit(score[tail], correct[tail])

    preds = pd.DataFrame({"position": pos, "fold": fold, "y_true": y_true, "y_pred": y_pred, **iv,
                          "confidence": confidence, "score": score})
    if hasattr(X, "index"):
        preds.insert(1, "index", X.index[pos])
    if sc is not None:
        preds["scale"] = sc  # volatility at prediction time: serving needs it with the residuals
    bounds = [f"{s}{level_key(lv)}" for lv in conformal.levels for s in ("lower", "upper")]
    iv_kw = {b: iv[b] for b in bounds if b in ("lower80", "upper80", "lower95", "upper95")}
    price_arr = None if price_full is None else price_full[pos]
    folds = []
    for k, (tr, te) in enumerate(splits):
        m = fold == k
        row = {"fold": k, "train_start": int(tr[0]), "train_end": int(tr[-1]), "test_start": int(te[0]),
               "test_end": int(te[-1]), "n_train": len(tr), "fit_seconds": timings[k][0],
               "predict_seconds": timings[k][1]}
        row.update(metrics(y_true[m], y_pred[m], **{b: v[m] for b, v in iv_kw.items()},
                           confidence=confidence[m]))
        folds.append(row)
    summary = evaluate_predictions(y_true, y_pred, name, intervals=iv_kw, confidence=confidence,
                                   naive_intervals={b: naive_iv[b] for b in iv_kw}, price=price_arr)
    no_iv = ~np.isfinite(iv[bounds[0]]) if bounds else np.zeros(len(pos), bool)
    return BacktestResult(folds=folds, predictions=preds, summary=summary, n_without_interval=int(no_iv.sum()),
                          conformal=conformal, calibrator=calibrator)


__all__ = ["walk_forward_splits", "naive_forecast", "metrics", "evaluate_predictions", "backtest", "BacktestResult",
           "RollingConformal", "DirectionCalibrator", "rolling_intervals", "DEFAULT_LEVELS"]
