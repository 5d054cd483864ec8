"""Training orchestration used by the CLIs: walk-forward evaluate, fit, and write a bundle.

For each (asset, timeframe):
1. every base kind is walk-forward evaluated (``evaluation.backtest``): out-of-sample
   predictions, rolling conformal intervals, calibrated direction confidence, per-fold metrics;
2. the ensemble is evaluated from the same out-of-sample member predictions: its weights for
   fold k are learned (inverse MSE) only from member errors realised before fold k starts
   (fold 0, with no earlier errors, uses equal weights), so its figures are as honest as the
   members' without refitting every member a second time;
3. each base kind is refitted on all rows and the ensemble is assembled from those fits with
   weights learned from all out-of-sample member errors;
4. the artifacts (models, trailing residuals for serving-time intervals, the direction
   calibrator) go into the bundle, the metrics into its manifest.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_predictor.calibration import RollingConformal
from crypto_predictor.datasets import Dataset, build_dataset
from crypto_predictor.errors import InsufficientData
from crypto_predictor.market.store import CandleStore
from crypto_predictor.models import EnsembleModel, get_model_class, inverse_mse_weights
from crypto_predictor.registry.artifacts import PAIR_FILE, SERVED, calibration_state, write_calibration, write_pair
from crypto_predictor.registry.bundle import BundleWriter
from crypto_predictor.training.skill_gate import gated_predictions, shrink_factor
from crypto_predictor.training.walk_forward import backtest

BASE_KINDS = ("linear", "random_forest", "xgboost", "lstm")
ALL_KINDS = BASE_KINDS + ("ensemble",)
# How many trailing realised residuals the bundle keeps for serving-time intervals.
RESIDUALS_KEPT = 2000


@dataclass
class TrainOptions:
    kinds: tuple = ALL_KINDS
    quick: bool = False
    seed: int = 42
    days: int | None = None
    n_folds: int = 4
    end: str | None = None


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
    files: list = field(default_factory=list)


def expand_kinds(model: str) -> tuple:
    if model == "all":
        return ALL_KINDS
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


def _conformal(ds: Dataset) -> tuple[RollingConformal, np.ndarray | None]:
    conformal = RollingConformal.for_horizon(ds.horizon, min_history=min(100, max(10, len(ds.y) // 20)))
    return conformal, conformal.scale(ds.close.to_numpy())


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


def train_pair(store, asset: str, timeframe: str, options: TrainOptions, out_dir: Path | None) -> PairResult:
    """Evaluate, fit and (when ``out_dir`` is given) save every requested kind for one pair."""
    ds = build_dataset(store, asset, timeframe, days=options.days, end=options.end)
    result = PairResult(ds.asset, ds.timeframe, ds.bar, ds.horizon, list(ds.X.columns), ds.context,
                        ds.data_range, len(ds.y))
    conformal, scale = _conformal(ds)
    n_folds = 2 if options.quick else options.n_folds
    min_train = _min_train(len(ds.y), ds.horizon)
    base = [k for k in BASE_KINDS if k in options.kinds or "ensemble" in options.kinds]
    oos, fitted, states = {}, {}, {}
    for kind in base:
        started = time.perf_counter()
        bt = backtest(lambda: make_model(kind, options, ds.horizon), ds.X, ds.y, ds.horizon, n_folds, min_train,
                      conformal=conformal, scale=scale, name=kind, price=ds.close.to_numpy())
        fitted[kind] = make_model(kind, options, ds.horizon).fit(ds.X, ds.y)
        result.seconds[kind] = time.perf_counter() - started
        oos[kind] = bt
        states[kind] = _calibration_state(bt, conformal, scale, ds)
        result.summary[kind] = bt.summary[0]
        result.summary.setdefault("naive", bt.summary[1])
        result.folds[kind] = bt.folds

    if "ensemble" in options.kinds:
        started = time.perf_counter()
        first = oos[base[0]].predictions
        index = pd.Index(first["index"])
        member_preds = {k: pd.Series(oos[k].predictions["y_pred"].to_numpy(), index=index) for k in base}
        table, fold_weights = _ensemble_oos(member_preds, pd.Series(first["y_true"].to_numpy(), index=index),
                                            pd.Series(first["fold"].to_numpy(), index=index), ds.horizon,
                                            pd.Series(first["position"].to_numpy(), index=index))
        bt = backtest(lambda: _Replay(table), ds.X, ds.y, ds.horizon, n_folds, min_train, conformal=conformal,
                      scale=scale, name="ensemble", price=ds.close.to_numpy())
        P = np.column_stack([member_preds[k].to_numpy() for k in base])
        weights = inverse_mse_weights(first["y_true"].to_numpy(), P)
        fitted["ensemble"] = EnsembleModel.from_fitted([fitted[k] for k in base], weights, gap=ds.horizon)
        states["ensemble"] = _calibration_state(bt, conformal, scale, ds)
        states["ensemble"]["weights"] = dict(zip(base, weights.round(6).tolist()))
        states["ensemble"]["weights_by_fold"] = fold_weights
        oos["ensemble"] = bt
        result.summary["ensemble"] = bt.summary[0]
        result.summary.setdefault("naive", bt.summary[1])
        result.folds["ensemble"] = bt.folds
        result.seconds["ensemble"] = time.perf_counter() - started

    base_kind = served_base(options.kinds, result.summary)
    states[SERVED] = _served(oos[base_kind], ds, n_folds, min_train, conformal, scale,
                             result, base_kind)
    if out_dir is not None:
        for kind in options.kinds:
            kind_dir = out_dir / kind
            result.files += [f"{kind}/{f}" for f in fitted[kind].save(kind_dir)]
            result.files.append(f"{kind}/{write_calibration(kind_dir, states[kind])}")
        result.files.append(f"{SERVED}/{write_calibration(out_dir / SERVED, states[SERVED])}")
    return result


def served_base(kinds, summary: dict) -> str:
    """The kind the served forecast shrinks: the ensemble when trained, else the only kind, else the
    lowest walk-forward MASE (``registry.artifacts.PairArtifacts.served_kind`` reads the same rule)."""
    kinds = [k for k in kinds if k != SERVED]
    if "ensemble" in kinds or len(kinds) == 1:
        return "ensemble" if "ensemble" in kinds else kinds[0]
    return min(sorted(kinds), key=lambda k: (summary.get(k) or {}).get("mase") or float("inf"))


def _served(base_bt, ds: Dataset, n_folds: int, min_train: int, conformal, scale, result: PairResult,
            base_kind: str) -> dict:
    """Evaluate the gated forecast (``skill_gate``) from the base kind's out-of-sample predictions and
    return its calibration state: shrink factor for serving, its intervals' residuals, its calibrator."""
    started = time.perf_counter()
    preds = base_bt.predictions
    index = pd.Index(preds["index"])
    gated, per_fold = gated_predictions(preds["y_true"], preds["y_pred"], preds["position"], preds["fold"],
                                        ds.horizon)
    bt = backtest(lambda: _Replay(pd.Series(gated, index=index)), ds.X, ds.y, ds.horizon, n_folds, min_train,
                  conformal=conformal, scale=scale, name=SERVED, price=ds.close.to_numpy())
    shrink, t = shrink_factor(preds["y_true"], preds["y_pred"], ds.horizon)
    result.summary[SERVED] = {**bt.summary[0], "base": base_kind, "shrink": shrink}
    result.folds[SERVED] = [{**row, **gate} for row, gate in zip(bt.folds, per_fold)]
    result.seconds[SERVED] = time.perf_counter() - started
    return _calibration_state(bt, conformal, scale, ds) | {"base": base_kind, "shrink": shrink, "t": round(t, 3),
                                                           "shrink_by_fold": per_fold}


@dataclass
class Skipped:
    """A pair that could not be trained (too little history); reported, not fatal for the run."""

    asset: str
    timeframe: str
    reason: str


def _train_job(database_url: str, asset: str, timeframe: str, options: TrainOptions, out_dir: str):
    """One (asset, timeframe) in a worker process: its own store connection, its own files."""
    out = Path(out_dir)
    try:
        result = train_pair(CandleStore(database_url), asset, timeframe, options, out)
    except InsufficientData as exc:
        shutil.rmtree(out, ignore_errors=True)
        return Skipped(asset, timeframe, exc.message)
    meta = {"asset": result.asset, "timeframe": result.timeframe, "bar": result.bar, "horizon": result.horizon,
            "features": result.features, "context": result.context, "data_range": list(result.data_range),
            "n_rows": result.n_rows, "kinds": list(options.kinds)}
    result.files.append(write_pair(out, meta))
    return result


def metrics_tables(results: list[PairResult]) -> dict:
    """Manifest metrics: overall[asset][timeframe][kind] (naive included) and per-fold rows."""
    overall, folds, seconds = {}, {}, {}
    for r in results:
        overall.setdefault(r.asset, {})[r.timeframe] = r.summary
        folds.setdefault(r.asset, {})[r.timeframe] = r.folds
        seconds.setdefault(r.asset, {})[r.timeframe] = r.seconds
    return {"overall": overall, "folds": folds, "train_seconds": seconds}


def train_run(database_url: str, assets, timeframes, options: TrainOptions, models_dir, n_jobs: int = 2,
              on_done=None, extra=None) -> tuple[str, list[PairResult]]:
    """Train every (asset, timeframe) in parallel into one new bundle; returns (version, results).

    Pairs with too little history are skipped (``on_done`` receives a Skipped; the manifest lists
    them); the run fails only when nothing could be trained. ``extra`` adds keys to the manifest's
    ``extra`` (e.g. why a retrain ran), sealed with the bundle.
    """
    from joblib import Parallel, delayed

    pairs = [(a, t) for a in assets for t in timeframes]
    with BundleWriter(models_dir) as writer:
        jobs = (delayed(_train_job)(database_url, a, t, options, str(writer.path_for(a, t, PAIR_FILE).parent))
                for a, t in pairs)
        results, skipped = [], []
        for result in Parallel(n_jobs=min(n_jobs, len(pairs)), return_as="generator_unordered")(jobs):
            (skipped if isinstance(result, Skipped) else results).append(result)
            if on_done is not None:
                on_done(result)
        if not results:
            raise InsufficientData("nothing to train: " + "; ".join(s.reason for s in skipped))
        results.sort(key=lambda r: (r.asset, r.timeframe))
        first, last = min(r.data_range[0] for r in results), max(r.data_range[1] for r in results)
        writer.finalize(
            assets=sorted({r.asset for r in results}), timeframes=list(timeframes), kinds=list(options.kinds),
            features=list(dict.fromkeys(f for r in results for f in r.features)),
            data_range={"start": first, "end": last, "days": options.days, "end_limit": options.end},
            metrics=metrics_tables(results),
            extra={**(extra or {}),
                   "quick": options.quick, "seed": options.seed, "n_folds": 2 if options.quick else options.n_folds,
                   "bars": {r.timeframe: r.bar for r in results},
                   "pairs": {f"{r.asset}/{r.timeframe}": {"bar": r.bar, "horizon": r.horizon, "rows": r.n_rows,
                                                          "context": r.context, "data_range": r.data_range}
                             for r in results},
                   "skipped": {f"{s.asset}/{s.timeframe}": s.reason for s in skipped}},
        )
    return writer.version, results
