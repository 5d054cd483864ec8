"""Loaded pairs: the served model of each (asset, timeframe) of a verified bundle, and its maths.

``load_bundle`` re-hashes the whole bundle (``registry.catalog.open_bundle``) before anything is
read, loads each pair's served forecast (``registry.artifacts.PairArtifacts.served``: the base
kind's model, the skill gate's shrinkage toward naive, the gated forecast's calibration),
and warms the compiled paths (the LSTM's single-window and batch functions, the trees' first
call) so the first request after a deploy pays no tracing.

The serving maths lives here, next to the artifacts it reads:

* features come from ``datasets.feature_frame`` on the newest ``features.SERVING_ROWS`` bars,
  the function training used;
* intervals: the bundle's ``RollingConformal`` settings over the trailing realised residuals,
  i.e. the stored out-of-sample residuals followed by post-training residuals (predictions on
  bars whose targets lie wholly after the training data and are realised in the store);
* confidence: the bundle's ``DirectionCalibrator`` at |prediction| / typical recent error.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_predictor.calibration import RollingConformal, level_key
from crypto_predictor.confidence import DirectionCalibrator, direction_score
from crypto_predictor.datasets import BAR_HOURS, feature_frame, features_from_bars
from crypto_predictor.errors import BundleIntegrityError, DataNotFound, InvalidInput, ModelNotFound
from crypto_predictor.features import SERVING_ROWS, make_target
from crypto_predictor.registry.artifacts import PAIR_FILE, SERVED, StoredResiduals, bundle_pairs, read_pair
from crypto_predictor.registry.catalog import open_bundle
from crypto_predictor.registry.headline import QUANTILE_BASELINE, skill_of
from crypto_predictor.sentiment_features import uses_sentiment

LEVELS = ("80", "95")
UNSERVED_METRICS = ("folds", "train_seconds")  # manifest metrics only training, evaluation and plots read


@dataclass(frozen=True)
class IntervalStats:
    """Conformal offsets (in volatility units when normalised) from the trailing residuals."""

    offsets: dict  # level key ("80") -> (low, high)
    error_unit: float  # mean |residual| of the window, same units
    n_stored: int
    n_post: int


@dataclass
class Prediction:
    log_return: float
    bounds: dict  # "80" -> (low, high) log-return bounds, or None without enough history
    error_scale: float
    confidence: float


@dataclass
class PairInputs:
    """What one prediction needs, from the newest bars of the store."""

    X_tail: pd.DataFrame  # the last ``context_rows`` feature rows, in the bundle's column order
    close: float  # close of the newest bar: the price the predicted return applies to
    bar_time: pd.Timestamp  # open time of the newest bar
    scale: float | None  # causal volatility at that bar (normalised intervals)
    values: np.ndarray | None = None  # X_tail as an array, made once: the models' input

    def array(self) -> np.ndarray:
        # Columns were selected by name; a plain array skips re-checking them per member.
        return self.values if self.values is not None else self.X_tail.to_numpy()


@dataclass
class ServingPair:
    version: str
    asset: str
    timeframe: str
    bar: str
    horizon: int  # in bars
    features: list
    context: list
    data_end: pd.Timestamp  # last training row (its target reaches ``horizon`` bars further)
    kind: str
    model: object
    conformal: RollingConformal
    calibrator: DirectionCalibrator
    stored_times: pd.DatetimeIndex
    stored_residuals: np.ndarray
    stored_scales: np.ndarray | None
    model_accuracy: float | None
    shrink: float = 1.0  # the skill gate's factor: the served forecast is shrink * model
    skill: dict | None = None  # walk-forward figures of the served forecast (``skill_of``)
    confident: bool = True  # its direction probability beat a coin flip walk-forward (``beats_coin_flip``)

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(hours=BAR_HOURS[self.bar])

    @property
    def context_rows(self) -> int:
        return int(self.model.context_rows)

    def window_start(self, newest_open: pd.Timestamp, first_bar: pd.Timestamp | None = None) -> pd.Timestamp:
        """Earliest hourly candle to load so ``first_bar`` (default the newest) has SERVING_ROWS bars of history."""
        if self.bar == "1d":
            first = newest_open.floor("1D") if first_bar is None else first_bar
            return first - pd.Timedelta(days=SERVING_ROWS)
        first = newest_open if first_bar is None else first_bar
        return first - (SERVING_ROWS - 1) * self.step

    @cached_property  # asked for every prediction; the features never change
    def sentiment(self) -> bool:
        """Whether its features include the Fear & Greed Index (it then needs the stored series)."""
        return uses_sentiment(self.features)

    def frame(self, candles: pd.DataFrame, context: dict, sentiment=None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(features, bars) from hourly candles: ``datasets.feature_frame``, as in training."""
        return feature_frame(candles, {name: context[name] for name in self.context}, self.bar,
                             sentiment if self.sentiment else None)

    def frame_from_bars(self, own: pd.DataFrame, context_bars: dict, sentiment=None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``frame`` from bars already made; ``context_bars`` holds the usable context assets only."""
        return features_from_bars(own, {name: context_bars[name] for name in self.context if name in context_bars},
                                  sentiment if self.sentiment else None)

    def _select(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise DataNotFound(f"{self.asset} {self.timeframe}: cannot compute the model's features "
                               f"{', '.join(missing[:3])} (context assets: {', '.join(self.context) or 'none'}; "
                               "ingest their candles)", asset=self.asset)
        return X[self.features]

    def inputs(self, X: pd.DataFrame, own: pd.DataFrame) -> PairInputs:
        """The newest rows of a ``frame`` result, checked complete."""
        tail = self._select(X.iloc[-self.context_rows:])
        values = np.array(tail.to_numpy(dtype=float), order="C")
        values.flags.writeable = False  # the service reuses it for every request until a new candle
        if len(own) == 0 or len(tail) < self.context_rows or not np.isfinite(values).all():
            raise DataNotFound(f"{self.asset} {self.timeframe}: not enough recent candles to compute features "
                               f"(need {SERVING_ROWS} {self.bar} bars without long holes)", asset=self.asset)
        close = own["close"].to_numpy(dtype=float)
        scale = self.conformal.scale(own)
        return PairInputs(tail, float(close[-1]), own.index[-1], None if scale is None else float(scale[-1]), values)

    # ---- residuals realised after training

    def post_training_range(self, newest_bar: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first, last) prediction times whose errors are honest, realised and not stored, or None."""
        reach = self.horizon * self.step
        first = self.data_end + reach
        if len(self.stored_times):
            first = max(first, self.stored_times[-1] + self.step)
        last = newest_bar - reach
        first = max(first, last - (self.conformal.window - 1) * self.step)  # older ones leave the window
        return None if last < first else (first, last)

    def post_training_residuals(self, candles: pd.DataFrame, context: dict, first: pd.Timestamp,
                                last: pd.Timestamp, sentiment=None) -> tuple[np.ndarray, np.ndarray | None]:
        """Residuals (realised minus predicted log return) and their scales for rows first..last."""
        X, own = self.frame(candles, context, sentiment)
        X = self._select(X)
        y = make_target(own["close"], self.horizon)
        scale = self.conformal.scale(own)
        rows = np.flatnonzero((X.index >= first) & (X.index <= last))
        if len(rows) == 0:
            return np.empty(0), None if scale is None else np.empty(0)
        start = max(0, rows[0] - self.context_rows + 1)
        bad = np.flatnonzero(~np.isfinite(X.iloc[start:rows[-1] + 1].to_numpy()).all(axis=1))
        if len(bad):  # a hole in the features: keep only what follows it
            start = start + bad[-1] + 1
            rows = rows[rows >= start + self.context_rows - 1]
            if len(rows) == 0:
                return np.empty(0), None if scale is None else np.empty(0)
        if self.shrink:
            pred = self.shrink * np.asarray(self.model.predict(X.iloc[start:rows[-1] + 1]), dtype=float)[rows - start]
        else:  # served as no-change: its errors are the realised returns, no model pass needed
            pred = np.zeros(len(rows))
        residual = y.to_numpy(dtype=float)[rows] - pred
        return residual, None if scale is None else scale[rows]

    def interval_stats(self, post_residuals=None, post_scales=None) -> IntervalStats | None:
        """Offsets from stored + post-training residuals (the latest ``window``); None if too few."""
        r = self.stored_residuals
        s = self.stored_scales
        n_post = 0 if post_residuals is None else len(post_residuals)
        if n_post:
            r = np.concatenate([r, post_residuals])
            if s is not None:
                s = np.concatenate([s, post_scales])
        try:
            offsets = self.conformal.offsets(r, s)
        except InvalidInput:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            units = r / s if s is not None else r
        units = units[np.isfinite(units)][-self.conformal.window:]
        return IntervalStats({level_key(lv): lo_hi for lv, lo_hi in offsets.items()},
                             float(np.mean(np.abs(units))), len(self.stored_residuals), n_post)

    def predict(self, inputs: PairInputs, stats: IntervalStats | None, output: float | None = None) -> Prediction:
        """``output``: the model's prediction already made (a batch's shared call), else the model is called."""
        if output is None and self.shrink:
            output = float(self.model.predict_last(inputs.array()))
        pred = self.shrink * output if self.shrink else 0.0
        bounds = {key: None for key in LEVELS}
        error_scale = math.nan
        s = 1.0 if inputs.scale is None else inputs.scale
        if stats is not None and math.isfinite(s):
            bounds = {key: (pred + stats.offsets[key][0] * s, pred + stats.offsets[key][1] * s)
                      if key in stats.offsets else None for key in LEVELS}
            error_scale = stats.error_unit * s
        confidence = 0.5
        if self.confident:  # else a calibrated 0.56 would claim more than the walk-forward showed
            confidence = float(self.calibrator.predict_proba(direction_score(pred, error_scale))[0])
        return Prediction(pred, bounds, error_scale, confidence)

    def warm_up(self) -> None:
        """Trace/compile the single-row and batch paths now rather than in the first request."""
        n = len(self.features)
        self.model.predict_last(np.zeros((self.context_rows, n)))
        self.model.predict(np.zeros((self.context_rows + 1, n)))


@dataclass
class LoadedBundle:
    version: str
    manifest: dict
    pairs: dict  # (asset, timeframe) -> ServingPair
    load_seconds: float

    def pair(self, asset: str, timeframe: str) -> ServingPair:
        found = self.pairs.get((asset, timeframe))
        if found is None:
            listing = ", ".join(f"{a}/{t}" for a, t in sorted(self.pairs)) or "nothing"
            raise ModelNotFound(f"model {self.version} has no {asset} {timeframe} model; it has: {listing}",
                                version=self.version, available=[f"{a}/{t}" for a, t in sorted(self.pairs)])
        return found


def beats_coin_flip(row: dict | None) -> bool:
    """Whether a walk-forward row's direction probability scored a Brier below 0.25 (a coin flip's).
    Rows from bundles trained before the Brier score was kept have no verdict: True, as before."""
    if not row or "brier" not in row:
        return True
    brier = row["brier"]
    return brier is not None and math.isfinite(float(brier)) and float(brier) < 0.25


def window_tail(stored: StoredResiduals, conformal: RollingConformal) -> StoredResiduals:
    """The stored residuals the conformal window can still read: from the ``window``-th newest finite one
    on (new ones only push older ones out). Copied, so the rest is freed: at 174 assets that keeps
    720 of 2000 per pair."""
    values, scales = stored.values, stored.scales
    with np.errstate(divide="ignore", invalid="ignore"):
        finite = np.flatnonzero(np.isfinite(values if scales is None else values / scales))
    if len(finite) <= conformal.window:
        return stored
    start = finite[-conformal.window]
    return StoredResiduals(stored.times[start:].copy(deep=True), values[start:].copy(),
                           None if scales is None else scales[start:].copy())


def serving_manifest(manifest: dict) -> dict:
    """The manifest without what no request reads (per-fold rows, fit seconds): at 174 assets those are
    4 MB of JSON, 9 MB as objects, in every worker for every loaded version."""
    metrics = {k: v for k, v in (manifest.get("metrics") or {}).items() if k not in UNSERVED_METRICS}
    return {**manifest, "metrics": metrics}


def load_pair(bundle, asset: str, timeframe: str) -> ServingPair:
    """The served forecast of one pair, read through ``registry.artifacts`` as the re-test reads it."""
    pair = read_pair(bundle, asset, timeframe)
    art = pair.served()
    rows = pair.metrics()
    base = art.model_kind or art.kind
    served_row = rows.get(SERVED) or rows.get(base)
    accuracy = (rows.get("ensemble") or rows.get(base) or {}).get("directional_accuracy")
    stored = window_tail(art.residuals, art.conformal)
    return ServingPair(
        version=bundle.version, asset=asset, timeframe=timeframe, bar=pair.bar, horizon=pair.horizon,
        features=list(pair.features), context=list(pair.context), data_end=pair.data_end, kind=base,
        model=art.load_model(), conformal=art.conformal, calibrator=art.calibrator, stored_times=stored.times,
        stored_residuals=stored.values, stored_scales=stored.scales,
        model_accuracy=None if accuracy is None else float(accuracy), shrink=art.shrink,
        skill=skill_of(served_row, rows.get(QUANTILE_BASELINE)), confident=beats_coin_flip(served_row))


def load_bundle(models_dir, version: str, warm_up: bool = True) -> LoadedBundle:
    """Verify every sha256, load every pair's served model (identical models once), warm it up."""
    from crypto_predictor.models import shared_loads  # late: scikit-learn only where a bundle loads

    started = time.perf_counter()
    bundle = open_bundle(Path(models_dir), version)
    pairs = {}
    with shared_loads(bundle.content_key):  # a global model saved under every asset: one copy
        for asset, timeframe in bundle_pairs(bundle):
            pair = load_pair(bundle, asset, timeframe)
            if warm_up:
                pair.warm_up()
            pairs[(asset, timeframe)] = pair
    if not pairs:
        raise BundleIntegrityError(f"bundle {bundle.version} holds no {PAIR_FILE}: not a bundle written by training")
    return LoadedBundle(bundle.version, serving_manifest(bundle.manifest), pairs, time.perf_counter() - started)
