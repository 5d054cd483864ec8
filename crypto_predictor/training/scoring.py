"""Scoring one pair's models the same way whatever fitted them: walk-forward, ensemble, skill gate, files.

For each (asset, timeframe):
1. every base kind is walk-forward evaluated (``walk_forward.backtest``): out-of-sample
   predictions, rolling conformal intervals, calibrated direction confidence, per-fold metrics;
2. the ensemble is evaluated from the same out-of-sample member predictions: its weights for
   fold k are learned (inverse MSE) only from member errors realised before fold k starts
   (fold 0, with no earlier errors, uses equal weights);
3. the served forecast is the skill gate's (``skill_gate``) shrinkage of the ensemble (or the
   only kind) toward no-change, learned the same way from earlier folds only;
4. the artifacts (models, trailing residuals for serving-time intervals, the direction
   calibrator, the shrinkage factor) go into the pair's directory, the metrics into its result.

Per-pair models (``pipeline.train_pair``) and global models (``global_models``) both end here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_predictor.calibration import RollingConformal
from crypto_predictor.datasets import BAR_HOURS, Dataset
from crypto_predictor.errors import InsufficientData, InvalidInput
from crypto_predictor.models import EnsembleModel, get_model_class, inverse_mse_weights
from crypto_predictor.registry.artifacts import SERVED, base_kind, calibration_state, write_calibration
from crypto_predictor.training.metrics import interval_score
from crypto_predictor.training.skill_gate import gated_predictions, shrink_factor
from crypto_predictor.training.walk_forward import backtest
from crypto_predictor.volatility import HarVolatility

BASE_KINDS = ("linear", "random_forest", "xgboost", "lstm")
ALL_KINDS = BASE_KINDS + ("ensemble",)
# The default ensemble and "--model all" leave the LSTM out: with it, 4 assets x 1h/24h trained 6.4x
# longer (216 s against 34 s) and the served forecast did not change (README "The LSTM"); it stays a kind.
DEFAULT_MEMBERS = ("linear", "random_forest", "xgboost")
DEFAULT_KINDS = DEFAULT_MEMBERS + ("ensemble",)
# --design auto: per timeframe the design that measured better over the 20 core assets (bench/bench_skill.py
# on the shared data to 2023-12-31, both designs on the same calendar walk-forward folds, 4 folds; README
# "Global or per-pair"). The figures are means over the 20 assets, copied into every manifest trained with auto.
AUTO_EVIDENCE = {
    tf: {"ensemble_mase": {"global": g_ens, "pair": p_ens}, "served_mase": {"global": 1.0, "pair": 1.0},
         "measured": "2026-12-02, bench/bench_skill.py --folds calendar, 20 core assets, same folds"}
    for tf, g_ens, p_ens in (("1h", 0.9981, 1.0022), ("24h", 1.0023, 1.0284), ("7d", 1.0602, 1.2810),
                             ("30d", 1.0679, 1.4152))}
# Global wherever its ensemble measured better than per-pair (AUTO_EVIDENCE): every timeframe.
AUTO_DESIGN = {"1h": "global", "24h": "global", "7d": "global", "30d": "global"}
# How many trailing realised residuals the bundle keeps for serving-time intervals.
RESIDUALS_KEPT = 2000


@dataclass
class TrainOptions:
    kinds: tuple = DEFAULT_KINDS
    members: tuple = DEFAULT_MEMBERS  # the ensemble's members (trained whenever the ensemble is)
    quick: bool = False
    seed: int = 42
    days: int | None = None
    n_folds: int = 4
    end: str | None = None
    design: str = "pair"  # "pair": per (asset, timeframe); "global": pooled per (timeframe, kind); "auto": AUTO_DESIGN
    # (global where the global context assets are stored, else pair)
    sentiment: bool = False  # add the Fear & Greed features (sentiment_features); measured, not on by default


@dataclass
class PairResult:
    asset: str
    timeframe: str
    bar: str
    horizon: int
    features: list
    context: list
    data_range: tuple
    n_rows: int
    summary: dict = field(default_factory=dict)  # kind -> metrics row; plus "naive"
    folds: dict = field(default_factory=dict)  # kind -> [fold rows]
    seconds: dict = field(default_factory=dict)  # kind -> fit+evaluate seconds
    states: dict = field(default_factory=dict)  # kind (and served) -> calibration state, for ``save_pair``
    member_weights: dict = field(default_factory=dict)  # the ensemble's exact member weights
    files: list = field(default_factory=list)
    kinds: list = field(default_factory=list)  # kinds saved
    design: str = "pair"  # "pair": models of this asset alone; "global": pooled over many assets
    # The served forecast's rows (``served_rows``): what figures pooled over many assets are made of
    # (bench_skill's standard errors); never written to files.
    served_rows: pd.DataFrame | None = None


def expand_kinds(model: str) -> tuple:
    if model == "all":
        return DEFAULT_KINDS
    get_model_class(model)  # unknown kind -> clear error listing the valid ones
    return (model,)


def make_model(kind: str, options: TrainOptions, horizon: int):
    cls = get_model_class(kind)
    params = dict(cls.QUICK_PARAMS) if options.quick else {}
    accepted = cls().get_params()
    if "seed" in accepted:
        params["seed"] = options.seed
    if "gap" in accepted:
        params["gap"] = horizon
    return cls(**params)


# Bars whose intervals are scaled by a HAR forecast: all of them. On daily bars (7d, 30d) it had
# measured sharper but over-covering at 7d, so those kept the EWMA (7d) and no scale (30d) until the
# global design pooled the fit: then 7d IS80 / IS95 over baseline_quantile 0.904 / 0.763 -> 0.863 /
# 0.714, cov80 0.805 -> 0.826 with the volatility thirds 0.725-0.898 -> 0.783-0.875; 30d 0.593 /
# 0.335 -> 0.566 / 0.309, cov80 0.905 -> 0.842 (README "Intervals against simple baselines").
HAR_BARS = ("1h", "1d")
# The HAR scale's power per timeframe (``RollingConformal.scale_power``; 1 elsewhere). At 24h the full
# scale over-covered wild periods and under-covered calm ones (cov80 by volatility third 0.756 / 0.799 /
# 0.838); a power of 0.75 over the longer window below gave 0.791 / 0.802 / 0.813 and the lowest interval
# score (bench_intervals --power, naive point, 20 core assets). At 1h the full scale measured best.
SCALE_POWER = {"24h": 0.75}
# Scores HAR-scaled intervals read, per bar: on hourly bars the trailing RESIDUALS_KEPT, not
# for_horizon's 720: scaled scores stay comparable across regimes, and at 24h 720 rows are only 30
# independent days (IS80 / baseline 0.954 -> 0.947, IS95 0.914 -> 0.884; 1h 0.925 -> 0.925, 0.877 ->
# 0.875). On daily bars 360 days: the trailing 720 came from wilder years and over-covered more (7d
# cov80 0.840 against 0.826, 30d 0.875 against 0.842, IS80 / baseline 0.867 -> 0.863 and 0.574 ->
# 0.566); 180 under-covered calm thirds (7d 0.758, 30d 0.727) and the 30d 95% band (0.923).
HAR_WINDOW = {"1h": RESIDUALS_KEPT, "1d": 360}


def har_for(ds: Dataset, series) -> HarVolatility | None:
    """The HAR variance model (``HarVolatility.for_bars``' settings) of ``ds``' bars and horizon over
    (candles, end) series: one asset's own, or every asset's of a global design (``global_models``).
    None off HAR_BARS, or with too few rows or an unstable fit."""
    if ds.bar not in HAR_BARS or ds.candles is None:
        return None
    rows_per_day = _rows_per_day(ds)
    try:
        return HarVolatility.fit_pooled(series, ds.horizon, rows_per_day, **HarVolatility.for_bars(rows_per_day))
    except InsufficientData:
        return None


def _conformal(ds: Dataset, fit_end: int, har: HarVolatility | None = None) -> tuple[RollingConformal, np.ndarray | None]:
    """Intervals scaled by ``har``, or by a HAR model of ``ds`` fitted on the rows before ``fit_end``
    (before the first test fold) on HAR_BARS; elsewhere, or with too few rows to fit one, the scale
    (EWMA or none) of ``RollingConformal.for_horizon``."""
    min_history = min(100, max(10, len(ds.y) // 20))
    candles = ds.close.to_numpy() if ds.candles is None else ds.candles
    if har is None:
        har = har_for(ds, [(ds.candles, fit_end)])
    if har is None:
        conformal = RollingConformal.for_horizon(ds.horizon, min_history=min_history)
    else:
        conformal = RollingConformal.for_horizon(ds.horizon, normalise=False, min_history=min_history,
                                                 window=HAR_WINDOW[ds.bar], har=har.to_state(),
                                                 scale_power=SCALE_POWER.get(ds.timeframe, 1.0))
    return conformal, conformal.scale(candles)


def _rows_per_day(ds: Dataset) -> int:
    return 24 // BAR_HOURS[ds.bar]


def _references(result: "PairResult", bt) -> None:
    """The naive and baseline rows of a pair (the same whichever kind's backtest computed them)."""
    for row in bt.summary[1:]:
        result.summary.setdefault(row["model"], row)


def _min_train(n: int, horizon: int) -> int:
    """Folds cover the second half of the series; the first half (less the purge gap) trains fold 0."""
    return max(50, int(n * 0.5) - horizon)


class _Replay:
    """A 'model' that returns precomputed out-of-sample predictions for the rows asked.

    Lets the ensemble's causally weighted predictions go through the same scoring
    (intervals, calibration, metrics) as every other kind.
    """

    def __init__(self, table: pd.Series):
        self.table = table

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.table.loc[X.index].to_numpy()


def _ensemble_oos(member_preds: dict, y_true: pd.Series, folds: pd.Series, horizon: int,
                  positions: pd.Series) -> tuple[pd.Series, list]:
    """Causally weighted ensemble predictions per fold; returns (predictions, weights per fold)."""
    names = list(member_preds)
    P = np.column_stack([member_preds[k].to_numpy() for k in names])
    y = y_true.to_numpy()
    out = np.empty(len(y))
    weights_by_fold = []
    for k in sorted(folds.unique()):
        here = (folds == k).to_numpy()
        first = positions[here].min()
        known = (positions + horizon <= first).to_numpy() & ~here
        w = inverse_mse_weights(y[known], P[known]) if known.sum() >= 10 else np.full(len(names), 1 / len(names))
        weights_by_fold.append(dict(zip(names, w.round(6).tolist())))
        out[here] = P[here] @ w
    return pd.Series(out, index=y_true.index), weights_by_fold


def _calibration_state(result, conformal: RollingConformal, scale, ds: Dataset) -> dict:
    """What serving needs to produce intervals and confidence for this kind."""
    preds = result.predictions.tail(RESIDUALS_KEPT)
    pos = preds["position"].to_numpy()
    return calibration_state(conformal, result.calibrator, ds.X.index[pos], preds["y_true"] - preds["y_pred"],
                             None if scale is None else scale[pos])


def base_kinds(options: TrainOptions) -> list[str]:
    """The single kinds a run fits: those asked for, and the ensemble's members when it is asked for."""
    return [k for k in BASE_KINDS if k in options.kinds or ("ensemble" in options.kinds and k in options.members)]


def score_pair(ds: Dataset, options: TrainOptions, out_dir: Path | None, model_for, final_for, splits=None,
               kinds=None, har: HarVolatility | None = None) -> PairResult:
    """Walk-forward every kind of one pair, combine them, gate the result, and save what serving needs.

    ``model_for(kind)``: a factory of unfitted models for the walk-forward folds (global models pass
    one replaying their pooled out-of-sample predictions); ``final_for(kind)``: the model fitted on
    all rows, or None where the caller saves the files itself (``save_pair``, with the models it holds:
    the global fan-out scores assets elsewhere); ``splits``: explicit folds (default
    ``walk_forward_splits``); ``kinds``: the single kinds to use (default ``base_kinds(options)``);
    ``har``: the intervals' variance model (default: one fitted on the pair's rows before its first fold).
    """
    result = PairResult(ds.asset, ds.timeframe, ds.bar, ds.horizon, list(ds.X.columns), ds.context,
                        ds.data_range, len(ds.y))
    n_folds = 2 if options.quick else options.n_folds
    min_train = _min_train(len(ds.y), ds.horizon)
    conformal, scale = _conformal(ds, min_train if splits is None else int(splits[0][1][0]) - ds.horizon, har)
    base = base_kinds(options) if kinds is None else list(kinds)
    oos, fitted, states = {}, {}, {}
    for kind in base:
        started = time.perf_counter()
        bt = _backtest(ds, model_for(kind), kind, n_folds, min_train, conformal, scale, splits)
        fitted[kind] = final_for(kind)
        result.seconds[kind] = time.perf_counter() - started
        oos[kind] = bt
        states[kind] = _calibration_state(bt, conformal, scale, ds)
        result.summary[kind] = bt.summary[0]
        _references(result, bt)
        result.folds[kind] = bt.folds

    if "ensemble" in options.kinds:
        started = time.perf_counter()
        members = [k for k in base if k in options.members]
        if not members:
            raise InvalidInput(f"the ensemble needs at least one of its members {', '.join(options.members)}")
        first = oos[members[0]].predictions
        index = pd.Index(first["index"])
        member_preds = {k: pd.Series(oos[k].predictions["y_pred"].to_numpy(), index=index) for k in members}
        table, fold_weights = _ensemble_oos(member_preds, pd.Series(first["y_true"].to_numpy(), index=index),
                                            pd.Series(first["fold"].to_numpy(), index=index), ds.horizon,
                                            pd.Series(first["position"].to_numpy(), index=index))
        bt = backtest(lambda: _Replay(table), ds.X, ds.y, ds.horizon, n_folds, min_train, conformal=conformal,
                      scale=scale, name="ensemble", price=ds.close.to_numpy(), splits=splits,
                      rows_per_day=_rows_per_day(ds))
        P = np.column_stack([member_preds[k].to_numpy() for k in members])
        weights = inverse_mse_weights(first["y_true"].to_numpy(), P)
        result.member_weights = dict(zip(members, weights))
        fitted["ensemble"] = None
        states["ensemble"] = _calibration_state(bt, conformal, scale, ds)
        states["ensemble"]["weights"] = dict(zip(members, weights.round(6).tolist()))
        states["ensemble"]["weights_by_fold"] = fold_weights
        oos["ensemble"] = bt
        result.summary["ensemble"] = bt.summary[0]
        _references(result, bt)
        result.folds["ensemble"] = bt.folds
        result.seconds["ensemble"] = time.perf_counter() - started

    saved = result.kinds = [k for k in options.kinds if k in fitted]
    served_from = base_kind(saved, result.summary)
    states[SERVED] = _served(oos[served_from], ds, n_folds, min_train, conformal, scale, result, served_from, splits)
    result.states = states
    if out_dir is not None and all(fitted[k] is not None for k in base):
        save_pair(result, out_dir, fitted)
    return result


def _backtest(ds: Dataset, model_factory, kind: str, n_folds: int, min_train: int, conformal, scale, splits):
    return backtest(model_factory, ds.X, ds.y, ds.horizon, n_folds, min_train, conformal=conformal, scale=scale,
                    name=kind, price=ds.close.to_numpy(), splits=splits, rows_per_day=_rows_per_day(ds))


def kind_predictions(ds: Dataset, options: TrainOptions, kind: str) -> pd.Series:
    """One kind's walk-forward out-of-sample predictions on a pair's own folds, as ``score_pair`` makes them
    (a fan-out task fits them; the pair's scoring replays them)."""
    min_train = _min_train(len(ds.y), ds.horizon)
    conformal, scale = _conformal(ds, min_train)
    bt = _backtest(ds, lambda: make_model(kind, options, ds.horizon), kind, 2 if options.quick else options.n_folds,
                   min_train, conformal, scale, None)
    return pd.Series(bt.predictions["y_pred"].to_numpy(), index=pd.Index(bt.predictions["index"]))


def save_pair(result: PairResult, out_dir: Path, fitted: dict) -> None:
    """Write each kind's final model and calibration, and the served forecast's calibration, into ``out_dir``;
    ``fitted``: kind -> final model of the single kinds (the ensemble is assembled from its members here)."""
    for kind in result.kinds:
        kind_dir = out_dir / kind
        model = fitted.get(kind)
        if kind == "ensemble":
            members = list(result.member_weights)
            model = EnsembleModel.from_fitted([fitted[k] for k in members], list(result.member_weights.values()),
                                              gap=result.horizon)
        result.files += [f"{kind}/{f}" for f in model.save(kind_dir)]
        result.files.append(f"{kind}/{write_calibration(kind_dir, result.states[kind])}")
    result.files.append(f"{SERVED}/{write_calibration(out_dir / SERVED, result.states[SERVED])}")


def _served(base_bt, ds: Dataset, n_folds: int, min_train: int, conformal, scale, result: PairResult,
            base: str, splits=None) -> dict:
    """Evaluate the gated forecast (``skill_gate``) from the base kind's out-of-sample predictions and
    return its calibration state: shrink factor for serving, its intervals' residuals, its calibrator."""
    started = time.perf_counter()
    preds = base_bt.predictions
    index = pd.Index(preds["index"])
    gated, per_fold = gated_predictions(preds["y_true"], preds["y_pred"], preds["position"], preds["fold"],
                                        ds.horizon)
    bt = backtest(lambda: _Replay(pd.Series(gated, index=index)), ds.X, ds.y, ds.horizon, n_folds, min_train,
                  conformal=conformal, scale=scale, name=SERVED, price=ds.close.to_numpy(), splits=splits,
                  rows_per_day=_rows_per_day(ds))
    shrink, t = shrink_factor(preds["y_true"], preds["y_pred"], ds.horizon)
    result.served_rows = served_rows(bt.predictions)
    result.summary[SERVED] = {**bt.summary[0], "base": base, "shrink": shrink}
    result.folds[SERVED] = [{**row, **gate} for row, gate in zip(bt.folds, per_fold)]
    result.seconds[SERVED] = time.perf_counter() - started
    return _calibration_state(bt, conformal, scale, ds) | {"base": base, "shrink": shrink, "t": round(t, 3),
                                                           "shrink_by_fold": per_fold}


def served_rows(preds: pd.DataFrame) -> pd.DataFrame:
    """Per served row (indexed by open time): inside80 / inside95 (1 / 0, NaN without an interval),
    is80 / is95 (its interval score) and bq_is80 / bq_is95 (``baseline_quantile``'s, NaN where either
    has no interval), and the volatility tercile; in small types, since a run of many assets holds
    every pair's."""
    y = preds["y_true"].to_numpy()
    column = lambda name: preds[name].to_numpy() if name in preds else np.full(len(preds), np.nan)  # noqa: E731
    out = {}
    for key, alpha in (("80", 0.2), ("95", 0.05)):
        lo, hi = column(f"lower{key}"), column(f"upper{key}")
        b_lo, b_hi = column(f"baseline_lower{key}"), column(f"baseline_upper{key}")
        has, both = np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo + hi + b_lo + b_hi)
        out[f"inside{key}"] = np.where(has, (y >= lo) & (y <= hi), np.nan).astype(np.float32)
        out[f"is{key}"] = np.where(both, interval_score(y, lo, hi, alpha), np.nan).astype(np.float32)
        out[f"bq_is{key}"] = np.where(both, interval_score(y, b_lo, b_hi, alpha), np.nan).astype(np.float32)
    return pd.DataFrame({**out, "tercile": preds["tercile"].to_numpy().astype(np.int8)},
                        index=pd.DatetimeIndex(preds["index"]))


@dataclass
class Skipped:
    """A pair that could not be trained (too little history); reported, not fatal for the run."""

    asset: str
    timeframe: str
    reason: str
