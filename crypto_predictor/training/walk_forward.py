"""Walk-forward evaluation against the naive (no-change) forecast.

Crypto prices are close to a random walk, so every figure here is measured on rows the model
never saw, next to the naive forecast (log return 0, i.e. "the price stays where it is").
Rows are equally spaced time steps (hours for hourly candles); ``horizon`` counts rows, and
row t's target is the log return from t to t + horizon, known only at row t + horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crypto_predictor.calibration import RollingConformal, level_key
from crypto_predictor.confidence import DirectionCalibrator, direction_correct, direction_score
from crypto_predictor.errors import InvalidInput
from crypto_predictor.training.baselines import BASELINE_DAYS, on_rows_of, quantile_baseline, static_baseline
from crypto_predictor.training.metrics import as_1d, evaluate_predictions, metrics, prediction_volatility, vol_terciles


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


@dataclass
class BacktestResult:
    """Everything a walk-forward run produced, all out-of-sample.

    ``predictions``: one row per test row (position, index label, fold, y_true, y_pred,
    lower/upper per level, n_history, error_scale, confidence, score, scale when normalised,
    tercile: the row's volatility third, ``vol_terciles``, -1 where unknown, and baseline_lower80 ..
    baseline_upper95: ``baseline_quantile``'s bounds on the row). ``summary``: model and naive rows
    over rows with intervals where relevant; ``n_without_interval`` rows lacked enough known errors.
    """

    folds: list[dict]
    predictions: pd.DataFrame
    summary: list[dict]
    n_without_interval: int
    conformal: RollingConformal
    calibrator: DirectionCalibrator | None = None


def _rows(obj, idx):
    return obj.iloc[idx] if hasattr(obj, "iloc") else obj[idx]


def _scales(conformal: RollingConformal, scale, price, n: int) -> np.ndarray | None:
    """Causal volatility per row for normalised intervals: explicit, else from the closes, else None."""
    if scale is not None:
        return as_1d("scale", scale, n)
    if not conformal.normalised:
        return None
    if price is None:
        raise InvalidInput("volatility-normalised conformal needs price (close per row) or scale")
    return conformal.scale(price)


def _fit_folds(make_model, X, y: np.ndarray, splits) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(test positions, predictions, fold of each, (fit, predict) seconds per fold)."""
    pos_parts, pred_parts, fold_parts, timings = [], [], [], []
    for k, (tr, te) in enumerate(splits):
        model = make_model()
        t0 = time.perf_counter()
        model.fit(_rows(X, tr), y[tr])
        t1 = time.perf_counter()
        pred = as_1d("predictions", model.predict(_rows(X, te)), len(te))
        timings.append((t1 - t0, time.perf_counter() - t1))
        if not np.all(np.isfinite(pred)):
            raise InvalidInput(f"model produced non-finite predictions in fold {k}")
        pos_parts.append(te)
        pred_parts.append(pred)
        fold_parts.append(np.full(len(te), k))
    return np.concatenate(pos_parts), np.concatenate(pred_parts), np.concatenate(fold_parts), timings


def _confidence(score, correct, pos, fold, splits, horizon: int, window: int | None, make_calibrator):
    """(confidence per row, the calibrator for serving): fold k's calibrator is fitted on the latest
    ``window`` rows realised before fold k starts; the one handed back sees the latest rows."""
    confidence = np.full(len(pos), np.nan)
    for k, (_, te) in enumerate(splits):
        known = np.flatnonzero(pos + horizon <= te[0])
        if window is not None:
            known = known[-window:]
        fold_cal = make_calibrator().fit(score[known], correct[known])
        confidence[fold == k] = fold_cal.predict_proba(score[fold == k])
    tail = np.arange(len(pos)) if window is None else np.arange(len(pos))[-window:]
    return confidence, make_calibrator().fit(score[tail], correct[tail])


def _baselines(y_arr, pos, splits, horizon: int, levels, window: int, reference: dict) -> dict:
    return {"baseline_quantile": on_rows_of(quantile_baseline(y_arr, pos, horizon, window, levels), reference),
            "baseline_static": on_rows_of(static_baseline(y_arr, pos, splits, horizon, levels), reference)}


def _fold_rows(splits, timings, fold, y_true, y_pred, iv_kw: dict, confidence, horizon: int) -> list[dict]:
    folds = []
    for k, (tr, te) in enumerate(splits):
        m = fold == k
        row = {"fold": k, "train_start": int(tr[0]) if len(tr) else None,
               "train_end": int(tr[-1]) if len(tr) else None, "test_start": int(te[0]),
               "test_end": int(te[-1]), "n_train": len(tr), "fit_seconds": timings[k][0],
               "predict_seconds": timings[k][1]}
        row.update(metrics(y_true[m], y_pred[m], **{b: v[m] for b, v in iv_kw.items()}, confidence=confidence[m],
                           horizon=horizon))
        row.pop("reliability")  # the table is the summary's: per fold it would only grow the manifest
        folds.append(row)
    return folds


def backtest(make_model, X, y, horizon: int, n_folds: int, min_train: int, test_size: int | None = None,
             expanding: bool = True, max_train: int | None = None, conformal: RollingConformal | None = None,
             scale=None, calibration_window: int | None = 5000, make_calibrator=None,
             name: str = "model", price=None, splits=None, rows_per_day: int = 24) -> BacktestResult:
    """Fit ``make_model()`` on each train fold, predict its test fold, score everything causally.

    Intervals for a test row t come from the residuals of earlier out-of-sample predictions
    (earlier folds and earlier in the same fold) known by t (s + horizon <= t). ``conformal``
    defaults to RollingConformal.for_horizon(horizon), volatility-normalised when ``price``
    (the close of each row, contiguous rows) is given. Rows with fewer than its
    ``min_history`` known residuals get NaN bounds and are excluded from coverage (counted in
    n_without_interval). The DirectionCalibrator for fold k is fitted on the latest
    ``calibration_window`` out-of-sample rows known before fold k starts; fold 0 gets the base
    rate 0.5. ``scale``: explicit causal volatility per row (overrides the one from price).
    The returned ``calibrator`` is refitted on the latest rows, ready for serving. ``splits``: explicit
    (train_idx, test_idx) pairs instead of ``walk_forward_splits`` (the global models' calendar folds,
    in which an asset's train part may be empty: its rows were predicted by a model fitted on others).
    The summary also scores the interval baselines (training/baselines.py; ``rows_per_day`` sizes the
    trailing 30 days) on the rows the model has intervals for, and every row's coverage per
    volatility tercile.
    """
    y_arr = as_1d("y", y)
    n = len(y_arr)
    if len(X) != n:
        raise InvalidInput(f"X has {len(X)} rows but y has {n}")
    if not np.all(np.isfinite(y_arr)):
        raise InvalidInput("y must be finite: drop the last rows whose target is not realised yet")
    price_full = None if price is None else as_1d("price", price, n)
    make_calibrator = make_calibrator or (lambda: DirectionCalibrator(horizon=max(int(horizon), 1)))
    if conformal is None:
        conformal = RollingConformal.for_horizon(horizon, normalise=price is not None)
    if conformal.horizon != horizon:
        raise InvalidInput(f"conformal horizon {conformal.horizon} differs from backtest horizon {horizon}")
    scale_arr = _scales(conformal, scale, price_full, n)
    if splits is None:
        splits = walk_forward_splits(n, n_folds, horizon, min_train, test_size, expanding, max_train)
    pos, y_pred, fold, timings = _fit_folds(make_model, X, y_arr, splits)
    y_true = y_arr[pos]

    sc = None if scale_arr is None else scale_arr[pos]
    iv = conformal.batch(pos, y_true, y_pred, scale=sc)
    naive_iv = conformal.batch(pos, y_true, np.zeros_like(y_true), scale=sc)
    score = direction_score(y_pred, iv["error_scale"])
    confidence, calibrator = _confidence(score, direction_correct(y_true, y_pred), pos, fold, splits, horizon,
                                         calibration_window, make_calibrator)

    preds = pd.DataFrame({"position": pos, "fold": fold, "y_true": y_true, "y_pred": y_pred, **iv,
                          "confidence": confidence, "score": score})
    if hasattr(X, "index"):
        preds.insert(1, "index", X.index[pos])
    if sc is not None:
        preds["scale"] = sc  # volatility at prediction time: serving needs it with the residuals
    bounds = [f"{s}{level_key(lv)}" for lv in conformal.levels for s in ("lower", "upper")]
    iv_kw = {b: iv[b] for b in bounds if b in ("lower80", "upper80", "lower95", "upper95")}
    price_arr = None if price_full is None else price_full[pos]
    vol = prediction_volatility(sc, price_full, horizon, pos)
    tercile = None if vol is None else vol_terciles(vol)
    preds["tercile"] = -1 if tercile is None else tercile
    baselines = _baselines(y_arr, pos, splits, horizon, [lv for lv in conformal.levels if lv in (0.8, 0.95)],
                           BASELINE_DAYS * int(rows_per_day), iv_kw)
    for bound, values in baselines["baseline_quantile"].items():
        preds[f"baseline_{bound}"] = values
    summary = evaluate_predictions(y_true, y_pred, name, intervals=iv_kw, confidence=confidence,
                                   naive_intervals={b: naive_iv[b] for b in iv_kw}, price=price_arr,
                                   baselines=baselines, tercile=tercile, horizon=horizon)
    no_iv = ~np.isfinite(iv[bounds[0]]) if bounds else np.zeros(len(pos), bool)
    return BacktestResult(folds=_fold_rows(splits, timings, fold, y_true, y_pred, iv_kw, confidence, horizon),
                          predictions=preds, summary=summary, n_without_interval=int(no_iv.sum()),
                          conformal=conformal, calibrator=calibrator)
