"""Re-score a saved bundle on a date range without retraining (what ``evaluate_model.py`` runs).

For each (asset, timeframe) of a verified bundle and each saved kind:

* features and targets come from ``datasets.build_dataset``, so they are computed exactly as
  in training and serving; rows before ``start`` only serve as feature history;
* intervals are causal inside the scored window: the bundle's trailing out-of-sample
  residuals (``calibration.json``) seed a rolling conformal, then every residual realised
  after training (between the last stored one and ``start``, and inside the window) joins it
  once its target is known (prediction position + horizon <= t), exactly like serving would
  have seen them. Times map to positions on the bar grid (hours or days), so gaps and a store
  holding more or less history than at training time do not shift anything;
* confidence uses the bundle's frozen direction calibrator: calibrator(|pred| / error scale);
* the naive (no-change) forecast is scored on the same rows, its interval history being the
  realised returns themselves (it has nothing to fit).

Only the standard library, numpy and pandas are needed at import; models load lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_predictor.bundle_layout import CALIBRATION_FILE, PAIR_FILE, bundle_pairs, pair_kinds
from crypto_predictor.calibration import (DEFAULT_LEVELS, DirectionCalibrator, RollingConformal, direction_score,
                                          level_key, rolling_intervals)
from crypto_predictor.datasets import BAR_HOURS, build_dataset
from crypto_predictor.errors import DataNotFound, InvalidInput
from crypto_predictor.evaluation import evaluate_predictions
from crypto_predictor.registry import Bundle, verify_bundle
from crypto_predictor.symbols import check_timeframe, resolve

# Nominal levels of the calibration (coverage) curve drawn by --plots.
CURVE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
RESULT_FIELDS = ("symbol", "timeframe", "model", "n", "mae", "rmse", "mase", "directional_accuracy",
                 "top_decile_directional_accuracy", "coverage_80", "coverage_95", "interval_width_80",
                 "naive_mae")
# Kept in the JSON too: they say how many rows the coverage figures rest on.
EXTRA_FIELDS = ("coverage_n_80", "coverage_n_95", "interval_width_95", "r2_oos")


# ---------------------------------------------------------------- bundles and pairs

def open_bundle_dir(path) -> Bundle:
    """A bundle directory given directly (``--model_path``), verified like ``open_bundle`` does."""
    root = Path(path)
    if not root.is_dir():
        raise DataNotFound(f"no bundle directory at {root}")
    return Bundle(path=root, manifest=verify_bundle(root))


def select_pairs(bundle: Bundle, symbols=(), timeframes=()) -> list[tuple[str, str]]:
    """The requested pairs (default: all of the bundle's); anything the bundle lacks is an error."""
    have = bundle_pairs(bundle)
    if not have:
        raise DataNotFound(f"bundle {bundle.version} holds no {PAIR_FILE}: not a bundle written by training")
    listing = ", ".join(f"{a}/{t}" for a, t in have)
    assets = list(dict.fromkeys(resolve(s).id for s in symbols)) or list(dict.fromkeys(a for a, _ in have))
    tfs = list(dict.fromkeys(check_timeframe(t) for t in timeframes)) or list(dict.fromkeys(t for _, t in have))
    wanted = [(a, t) for a in assets for t in tfs]
    if symbols and timeframes:
        missing = [p for p in wanted if p not in have]
    else:  # one side defaulted: only complain about a symbol or timeframe that appears nowhere
        missing = [(a, t) for a, t in wanted if (symbols and not any(a == h[0] for h in have))
                   or (timeframes and not any(t == h[1] for h in have))]
        wanted = [p for p in wanted if p in have]
    if missing or not wanted:
        what = ", ".join(f"{a}/{t}" for a, t in missing) or "the requested pairs"
        raise DataNotFound(f"bundle {bundle.version} has no {what}; it has: {listing}")
    return wanted


def parse_time(value, name: str) -> pd.Timestamp | None:
    """An ISO time as tz-aware UTC (naive means UTC); InvalidInput if unreadable."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name}: not an ISO date/time: {value!r} ({exc})") from None
    if ts is pd.NaT:
        raise InvalidInput(f"{name}: not an ISO date/time: {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# ---------------------------------------------------------------- results

@dataclass
class ConformalInputs:
    """What produced a kind's intervals, kept so coverage at other levels can be recomputed."""

    res_pos: np.ndarray
    residuals: np.ndarray
    res_scale: np.ndarray | None
    query_pos: np.ndarray
    query_pred: np.ndarray
    query_scale: np.ndarray | None
    horizon: int
    window: int
    min_history: int
    symmetric: bool

    def intervals(self, levels) -> dict:
        scales = {} if self.res_scale is None else {"res_scale": self.res_scale, "query_scale": self.query_scale}
        return rolling_intervals(self.res_pos, self.residuals, self.query_pos, self.query_pred, self.horizon,
                                 self.window, levels, self.min_history, self.symmetric, **scales)


@dataclass
class KindResult:
    kind: str
    model: object  # the loaded BaseModel; None for naive
    y_pred: np.ndarray
    intervals: dict  # lower80/upper80/lower95/upper95, n_history, error_scale
    confidence: np.ndarray | None
    conformal: ConformalInputs


@dataclass
class PairEvaluation:
    asset: str
    timeframe: str
    bar: str
    horizon: int
    features: list
    index: pd.DatetimeIndex  # prediction times of the scored rows
    y_true: np.ndarray
    close: np.ndarray
    training_range: tuple  # first and last training row (prediction times)
    sample: str  # "out_of_sample" | "in_sample" | "before_training"
    kinds: dict = field(default_factory=dict)  # kind -> KindResult, bundle order
    naive: KindResult | None = None
    rows: list = field(default_factory=list)  # result rows, kinds then naive

    @property
    def window(self) -> tuple[str, str]:
        return self.index[0].isoformat(), self.index[-1].isoformat()

    def warning(self) -> str | None:
        """One line when the figures are not an honest out-of-sample test."""
        head = (f"warning: {self.asset} {self.timeframe}: scored window {self.window[0]} .. {self.window[1]}")
        train = f"{self.training_range[0]} .. {self.training_range[1]}"
        if self.sample == "in_sample":
            return (f"{head} overlaps the bundle's training data ({train}, targets {self.horizon} bar(s) ahead): "
                    "these figures are in-sample, not an honest test")
        if self.sample == "before_training":
            return (f"{head} precedes the bundle's training data ({train}): the models were fitted on later "
                    "prices, so these figures are not an honest test")
        return None

    def coverage_curve(self, kind: str, levels=CURVE_LEVELS) -> dict[float, float]:
        """Observed coverage per nominal level (rows without an interval left out)."""
        result = self.naive if kind == "naive" else self.kinds[kind]
        iv = result.conformal.intervals(levels)
        out = {}
        for level in levels:
            lo, hi = iv[f"lower{level_key(level)}"], iv[f"upper{level_key(level)}"]
            ok = np.isfinite(lo) & np.isfinite(hi)
            inside = (self.y_true[ok] >= lo[ok]) & (self.y_true[ok] <= hi[ok])
            out[level] = float(inside.mean()) if ok.any() else math.nan
        return out


def _sample_status(index: pd.DatetimeIndex, training_range, step: pd.Timedelta, horizon: int) -> str:
    """Where the scored targets sit against the training targets (which reach ``horizon`` bars ahead)."""
    train_start, train_end = (pd.Timestamp(t) for t in training_range)
    first, last = index[0], index[-1]
    reach = step * horizon
    if last + reach <= train_start:
        return "before_training"
    if first < train_end + reach:
        return "in_sample"
    return "out_of_sample"


# ---------------------------------------------------------------- scoring

def _positions(times, origin: pd.Timestamp, step: pd.Timedelta) -> np.ndarray:
    """Bar-grid positions of times relative to ``origin`` (negative before it)."""
    delta = pd.DatetimeIndex(times) - origin
    return np.asarray(delta // step, dtype=np.int64)


def _predict(model, X: pd.DataFrame, first: int) -> np.ndarray:
    """Predictions for rows ``first..`` of X, giving sequence models their preceding context rows."""
    start = max(0, first - int(getattr(model, "context_rows", 1)) + 1)
    return np.asarray(model.predict(X.iloc[start:]), dtype=float)[first - start:]


def _load_kind(bundle: Bundle, asset: str, timeframe: str, kind: str):
    from crypto_predictor.models import load_model

    bundle.artifact(asset, timeframe, kind, "model.json")  # listed in the manifest, hence verified
    return load_model(bundle.path / asset / timeframe / kind)


def evaluate_pair(bundle: Bundle, store, asset: str, timeframe: str, start=None, end=None) -> PairEvaluation:
    """Score every saved kind of one pair on the rows at or after ``start`` (candles up to ``end``)."""
    start, end = parse_time(start, "--start"), parse_time(end, "--end")
    meta = bundle.read_json(asset, timeframe, PAIR_FILE)
    horizon = int(meta["horizon"])
    ds = build_dataset(store, asset, timeframe, end=end)
    if ds.bar != meta["bar"] or ds.horizon != horizon:
        raise InvalidInput(f"{asset} {timeframe}: bundle was trained on {meta['bar']} bars, horizon {horizon}; "
                           f"this code builds {ds.bar} bars, horizon {ds.horizon}")
    missing = [f for f in meta["features"] if f not in ds.X.columns]
    if missing:
        ctx = ", ".join(meta.get("context") or []) or "none"
        raise DataNotFound(f"{asset} {timeframe}: cannot compute the bundle's features {', '.join(missing[:4])}"
                           f"{' ...' if len(missing) > 4 else ''} (context assets: {ctx}; ingest them)")
    X = ds.X[meta["features"]]
    y = ds.y.to_numpy(dtype=float)
    close = ds.close.to_numpy(dtype=float)
    step = pd.Timedelta(hours=BAR_HOURS[ds.bar])
    origin = X.index[0]
    pos_all = _positions(X.index, origin, step)
    scored = np.ones(len(X), bool) if start is None else np.asarray(X.index >= start)
    if not scored.any():
        raise DataNotFound(f"no {asset} {timeframe} rows to score at or after {start.isoformat()} "
                           f"(rows with a realised target end at {X.index[-1].isoformat()})")
    index = X.index[scored]
    training_range = tuple(meta["data_range"])
    result = PairEvaluation(asset, timeframe, ds.bar, horizon, list(meta["features"]), index, y[scored],
                            close[scored], training_range, _sample_status(index, training_range, step, horizon))

    kinds = pair_kinds(bundle, asset, timeframe)
    if not kinds:
        raise DataNotFound(f"bundle {bundle.version} has no model for {asset} {timeframe}")
    scale_all = None
    for kind in kinds:
        state = bundle.read_json(asset, timeframe, kind, CALIBRATION_FILE)
        conformal = RollingConformal(**state["conformal"])
        if conformal.horizon != horizon:
            raise InvalidInput(f"{asset} {timeframe} {kind}: calibration horizon {conformal.horizon} != {horizon}")
        scale = conformal.scale(close)  # None when the intervals are not volatility-normalised
        scale_all = scale if scale_all is None else scale_all

        # Stored residuals: only those made before the window (later ones would be in-sample here).
        stored = state["residuals"]
        s_time = pd.to_datetime(pd.Series(stored["time"], dtype=object), utc=True)
        keep = np.asarray(s_time < index[0])
        s_pos = _positions(s_time[keep], origin, step)
        s_res = np.asarray(stored["residual"], dtype=float)[keep]
        s_scale = None
        if scale is not None:
            if stored.get("scale") is None:
                raise InvalidInput(f"{asset} {timeframe} {kind}: calibration is volatility-normalised but "
                                   "stores no residual scales")
            s_scale = np.asarray([np.nan if v is None else v for v in stored["scale"]], dtype=float)[keep]
        # Residual history also gains the rows between training and the window whose targets lie
        # wholly after the training data (honest post-training errors), then the window itself.
        fresh = scored | np.asarray(X.index >= pd.Timestamp(training_range[1]) + step * horizon)
        if len(s_time):
            fresh &= scored | np.asarray(X.index > s_time.max())
        fresh_first = int(np.argmax(fresh))
        model = _load_kind(bundle, asset, timeframe, kind)
        pred_from = _predict(model, X, fresh_first)
        f_rows = np.flatnonzero(fresh)
        f_pred = pred_from[f_rows - fresh_first]
        res_pos = np.concatenate([s_pos, pos_all[f_rows]])
        residuals = np.concatenate([s_res, y[f_rows] - f_pred])
        res_scale = None if scale is None else np.concatenate([s_scale, scale[f_rows]])
        y_pred = pred_from[np.flatnonzero(scored) - fresh_first]
        inputs = ConformalInputs(res_pos, residuals, res_scale, pos_all[scored], y_pred,
                                 None if scale is None else scale[scored], horizon, conformal.window,
                                 conformal.min_history, conformal.symmetric)
        iv = inputs.intervals(conformal.levels)
        calibrator = DirectionCalibrator.from_state(state["direction_calibrator"])
        confidence = calibrator.predict_proba(direction_score(y_pred, iv["error_scale"]))
        result.kinds[kind] = KindResult(kind, model, y_pred, iv, confidence, inputs)

    # Naive: nothing to fit, so every realised return up to the window is honest history.
    ref = next(iter(result.kinds.values())).conformal
    naive_inputs = ConformalInputs(pos_all, y.copy(), scale_all, pos_all[scored], np.zeros(scored.sum()),
                                   None if scale_all is None else scale_all[scored], horizon, ref.window,
                                   ref.min_history, ref.symmetric)
    naive_iv = naive_inputs.intervals(DEFAULT_LEVELS)
    result.naive = KindResult("naive", None, naive_inputs.query_pred, naive_iv, None, naive_inputs)

    bounds = ("lower80", "upper80", "lower95", "upper95")
    naive_row = None
    for kind, kr in result.kinds.items():
        model_row, naive_row = evaluate_predictions(
            result.y_true, kr.y_pred, kind, intervals={b: kr.intervals.get(b) for b in bounds},
            confidence=kr.confidence, naive_intervals={b: naive_iv.get(b) for b in bounds}, price=result.close)
        result.rows.append(_result_row(asset, timeframe, model_row))
    result.rows.append(_result_row(asset, timeframe, naive_row))
    return result


def _clean(value):
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _result_row(asset: str, timeframe: str, row: dict) -> dict:
    full = {"symbol": asset, "timeframe": timeframe, **row}
    return {k: _clean(full.get(k)) for k in RESULT_FIELDS + EXTRA_FIELDS}


def evaluate_bundle(bundle: Bundle, store, pairs, start=None, end=None, on_done=None) -> list[PairEvaluation]:
    """``evaluate_pair`` for each (asset, timeframe) in ``pairs``."""
    out = []
    for asset, timeframe in pairs:
        evaluation = evaluate_pair(bundle, store, asset, timeframe, start, end)
        out.append(evaluation)
        if on_done is not None:
            on_done(evaluation)
    return out


def report(bundle: Bundle, evaluations: list[PairEvaluation], start=None, end=None) -> dict:
    """The JSON document: version, one result row per kind and naive, and per-pair windows."""
    return {
        "version": bundle.version,
        "start": None if start is None else parse_time(start, "--start").isoformat(),
        "end": None if end is None else parse_time(end, "--end").isoformat(),
        "results": [row for e in evaluations for row in e.rows],
        "pairs": [{"symbol": e.asset, "timeframe": e.timeframe, "bar": e.bar, "horizon": e.horizon,
                   "scored_start": e.window[0], "scored_end": e.window[1], "n": len(e.index),
                   "training_range": list(e.training_range), "sample": e.sample} for e in evaluations],
        "warnings": [w for w in (e.warning() for e in evaluations) if w],
    }


# ---------------------------------------------------------------- for the plots

def feature_importance(evaluation: PairEvaluation) -> tuple[str, pd.Series] | None:
    """(kind, importance per feature, largest first): xgboost, else random forest, else linear.

    Tree kinds: xgboost's total gain per feature from the fitted booster (``booster_``).
    Linear: |coefficient| on standardised features (``coef_``), comparable across features.
    Ensemble members are searched too; the LSTM has no cheap importance and is skipped.
    """
    candidates = []
    for kind, kr in evaluation.kinds.items():
        candidates.append((kind, kr.model))
        candidates += [(f"{kind}:{m.kind}", m) for m in getattr(kr.model, "members_", [])]
    preference = {"xgboost": 0, "random_forest": 1, "linear": 2}
    candidates.sort(key=lambda c: preference.get(getattr(c[1], "kind", ""), 9))  # stable: bundle order next
    names = evaluation.features
    for label, model in candidates:
        booster = getattr(model, "booster_", None)
        if booster is not None:
            gain = booster.get_score(importance_type="total_gain")  # keys f0, f1, ... (fitted on arrays)
            values = [gain.get(f"f{i}", gain.get(name, 0.0)) for i, name in enumerate(names)]
            return label, pd.Series(values, index=names, dtype=float).sort_values(ascending=False)
        coef = getattr(model, "coef_", None)
        if coef is not None and len(np.ravel(coef)) == len(names):
            return label, pd.Series(np.abs(np.ravel(coef)), index=names).sort_values(ascending=False)
    return None


def confidence_reliability(evaluation: PairEvaluation, kind: str, bins: int = 5) -> pd.DataFrame:
    """Mean confidence vs observed hit rate per confidence quantile bin (rows with a direction)."""
    kr = evaluation.kinds[kind]
    t, p = np.sign(evaluation.y_true), np.sign(kr.y_pred)
    ok = (t != 0) & (p != 0) & np.isfinite(kr.confidence)
    frame = pd.DataFrame({"confidence": kr.confidence[ok], "hit": (t[ok] == p[ok]).astype(float)})
    if frame.empty:
        return frame.assign(n=[])
    frame["bin"] = pd.qcut(frame["confidence"].rank(method="first"), min(bins, len(frame)), labels=False)
    return frame.groupby("bin").agg(confidence=("confidence", "mean"), hit=("hit", "mean"),
                                    n=("hit", "size")).reset_index(drop=True)
