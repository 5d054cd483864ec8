"""Re-score a saved bundle on a date range without retraining (what ``evaluate_model.py`` runs).

For each (asset, timeframe) of a verified bundle, each saved kind and the served forecast (row
``served``: exactly the forecast and intervals the API would return, i.e. the base kind times the
skill gate's shrinkage, with the gated forecast's residuals and calibrator):

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

Every file is read through ``registry.artifacts``, as serving reads it; models load lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crypto_predictor.calibration import DEFAULT_LEVELS, level_key, rolling_intervals
from crypto_predictor.confidence import direction_score
from crypto_predictor.datasets import BAR_HOURS, build_dataset
from crypto_predictor.errors import DataNotFound
from crypto_predictor.market.sentiment import stored_series
from crypto_predictor.registry.artifacts import PAIR_FILE, SERVED, KindArtifacts, PairArtifacts, bundle_pairs, read_pair
from crypto_predictor.registry.bundle import Bundle
from crypto_predictor.sentiment_features import uses_sentiment
from crypto_predictor.symbols import check_timeframe, resolve
from crypto_predictor.timeutil import parse_time
from crypto_predictor.training.baselines import BASELINE_DAYS, on_rows_of, quantile_baseline, static_baseline
from crypto_predictor.training.metrics import evaluate_predictions, prediction_volatility, vol_terciles

# Nominal levels of the calibration (coverage) curve drawn by --plots.
CURVE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
RESULT_FIELDS = ("symbol", "timeframe", "model", "n", "mae", "rmse", "mase", "directional_accuracy",
                 "top_decile_directional_accuracy", "coverage_80", "coverage_95", "interval_width_80",
                 "naive_mae")
# Kept in the JSON too: they say how many rows the coverage figures rest on.
EXTRA_FIELDS = ("coverage_n_80", "coverage_n_95", "interval_width_95", "r2_oos", "interval_score_80",
                "interval_score_95", "brier", "brier_n", "reliability_slope", "coverage_80_by_vol",
                "coverage_95_by_vol", "n_by_vol", "coverage_80_se", "coverage_95_se", "coverage_80_by_vol_se",
                "coverage_95_by_vol_se")


# ---------------------------------------------------------------- bundles and pairs

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


@dataclass
class _Rows:
    """The pair's dataset on the bundle's features, and which rows are scored."""

    X: pd.DataFrame
    y: np.ndarray
    close: np.ndarray
    step: pd.Timedelta
    origin: pd.Timestamp
    pos: np.ndarray  # bar-grid position of every row
    scored: np.ndarray  # bool mask of the rows at or after start
    candles: pd.DataFrame  # open, high, low, close of every row (the volatility scales' input)

    def positions(self, times) -> np.ndarray:
        return _positions(times, self.origin, self.step)


def _rows(pair: PairArtifacts, store, start, end) -> _Rows:
    sentiment = stored_series(store.engine) if uses_sentiment(pair.features) else None
    ds = build_dataset(store, pair.asset, pair.timeframe, end=end, context_assets=pair.context or None,
                       sentiment=sentiment)
    missing = [f for f in pair.features if f not in ds.X.columns]
    if missing:
        ctx = ", ".join(pair.context) or "none"
        raise DataNotFound(f"{pair.asset} {pair.timeframe}: cannot compute the bundle's features "
                           f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} (context assets: {ctx}; "
                           "ingest them)")
    X = ds.X[pair.features]
    scored = np.ones(len(X), bool) if start is None else np.asarray(X.index >= start)
    if not scored.any():
        raise DataNotFound(f"no {pair.asset} {pair.timeframe} rows to score at or after {start.isoformat()} "
                           f"(rows with a realised target end at {X.index[-1].isoformat()})")
    step = pd.Timedelta(hours=BAR_HOURS[ds.bar])
    return _Rows(X, ds.y.to_numpy(dtype=float), ds.close.to_numpy(dtype=float), step, X.index[0],
                 _positions(X.index, X.index[0], step), scored, ds.candles)


def _score_kind(art: KindArtifacts, rows: _Rows, horizon: int, scale, model=None) -> KindResult:
    """One kind's predictions, causal intervals and confidence on the scored rows; ``scale``: its
    causal volatility per row (None when its intervals are not volatility-normalised). The served
    forecast is its base kind's prediction times the shrinkage factor (``model``: that base model
    when already loaded)."""
    conformal = art.conformal
    index = rows.X.index
    first_scored = index[rows.scored][0]
    # Stored residuals: only those made before the window (later ones would be in-sample here).
    stored = art.residuals
    keep = np.asarray(stored.times < first_scored)
    s_pos, s_res = rows.positions(stored.times[keep]), stored.values[keep]
    s_scale = None if scale is None else stored.scales[keep]
    # Residual history also gains the rows between training and the window whose targets lie
    # wholly after the training data (honest post-training errors), then the window itself.
    fresh = rows.scored | np.asarray(index >= art.pair.data_end + rows.step * horizon)
    if len(stored.times):
        fresh &= rows.scored | np.asarray(index > stored.times.max())
    fresh_first = int(np.argmax(fresh))
    model = art.load_model() if model is None else model
    pred_from = art.shrink * _predict(model, rows.X, fresh_first)
    f_rows = np.flatnonzero(fresh)
    res_pos = np.concatenate([s_pos, rows.pos[f_rows]])
    residuals = np.concatenate([s_res, rows.y[f_rows] - pred_from[f_rows - fresh_first]])
    res_scale = None if scale is None else np.concatenate([s_scale, scale[f_rows]])
    y_pred = pred_from[np.flatnonzero(rows.scored) - fresh_first]
    inputs = ConformalInputs(res_pos, residuals, res_scale, rows.pos[rows.scored], y_pred,
                             None if scale is None else scale[rows.scored], horizon, conformal.window,
                             conformal.min_history, conformal.symmetric)
    iv = inputs.intervals(conformal.levels)
    confidence = art.calibrator.predict_proba(direction_score(y_pred, iv["error_scale"]))
    return KindResult(art.kind, model, y_pred, iv, confidence, inputs)


def _score_naive(rows: _Rows, ref: ConformalInputs, scale, horizon: int) -> KindResult:
    """Naive: nothing to fit, so every realised return up to the window is honest history."""
    inputs = ConformalInputs(rows.pos, rows.y.copy(), scale, rows.pos[rows.scored], np.zeros(rows.scored.sum()),
                             None if scale is None else scale[rows.scored], horizon, ref.window, ref.min_history,
                             ref.symmetric)
    return KindResult("naive", None, inputs.query_pred, inputs.intervals(DEFAULT_LEVELS), None, inputs)


def evaluate_pair(bundle: Bundle, store, asset: str, timeframe: str, start=None, end=None) -> PairEvaluation:
    """Score every saved kind of one pair on the rows at or after ``start`` (candles up to ``end``)."""
    start, end = parse_time(start, "--start"), parse_time(end, "--end")
    pair = read_pair(bundle, asset, timeframe)
    if not pair.kinds:
        raise DataNotFound(f"bundle {bundle.version} has no model for {asset} {timeframe}")
    rows = _rows(pair, store, start, end)
    index = rows.X.index[rows.scored]
    result = PairEvaluation(asset, timeframe, pair.bar, pair.horizon, list(pair.features), index,
                            rows.y[rows.scored], rows.close[rows.scored], pair.data_range,
                            _sample_status(index, pair.data_range, rows.step, pair.horizon))
    scales = []
    for art in (pair.kind(kind) for kind in pair.kinds):
        scales.append(art.conformal.scale(rows.candles))
        result.kinds[art.kind] = _score_kind(art, rows, pair.horizon, scales[-1])
    served = pair.served()
    base = result.kinds.get(served.model_kind or served.kind)
    served_scale = served.conformal.scale(rows.candles)
    result.kinds[SERVED] = _score_kind(served, rows, pair.horizon, served_scale, None if base is None else base.model)
    # The naive forecast's intervals are volatility-normalised like the kinds' (when they are).
    scale = next((s for s in scales if s is not None), None)
    result.naive = _score_naive(rows, next(iter(result.kinds.values())).conformal, scale, pair.horizon)

    bounds = ("lower80", "upper80", "lower95", "upper95")
    naive_iv = result.naive.intervals
    references = []
    baselines = _baselines(rows, pair, result.kinds[SERVED].intervals)
    vol = prediction_volatility(None if served_scale is None else served_scale[rows.scored], rows.close, pair.horizon,
                                np.flatnonzero(rows.scored))
    tercile = None if vol is None else vol_terciles(vol)
    for kind, kr in result.kinds.items():
        model_row, *references = evaluate_predictions(
            result.y_true, kr.y_pred, kind, intervals={b: kr.intervals.get(b) for b in bounds},
            confidence=kr.confidence, naive_intervals={b: naive_iv.get(b) for b in bounds}, price=result.close,
            baselines=baselines, tercile=tercile, horizon=pair.horizon)
        result.rows.append(_result_row(asset, timeframe, model_row))
    result.rows += [_result_row(asset, timeframe, row) for row in references]
    return result


def _baselines(rows: _Rows, pair: PairArtifacts, served_intervals: dict) -> dict:
    """training/baselines.py's baselines on the scored rows (rows counted in order: a gap in the
    candles shortens the trailing 30 days a little), on the rows the served forecast has intervals."""
    scored = np.flatnonzero(rows.scored)
    window = BASELINE_DAYS * (24 // BAR_HOURS[pair.bar])
    quantile = quantile_baseline(rows.y, scored, pair.horizon, window, DEFAULT_LEVELS)
    static = static_baseline(rows.y, scored, [(None, scored)], pair.horizon, DEFAULT_LEVELS)
    return {"baseline_quantile": on_rows_of(quantile, served_intervals),
            "baseline_static": on_rows_of(static, served_intervals)}


def _clean(value):
    if isinstance(value, list):
        return [_clean(v) for v in value]
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
