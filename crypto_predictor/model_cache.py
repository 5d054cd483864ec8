"""Loaded bundles: every (asset, timeframe) model of a verified bundle, ready to serve.

``ModelCache`` holds what a worker serves: the production and challenger bundles, swapped as one
immutable snapshot when the alias file changes (requests in flight keep the snapshot they
took), plus a few explicitly requested versions. A bundle that fails to load is refused, the
previous one keeps serving, the failure is kept for health checks and the load is retried
every ``FAILED_RETRY_SECONDS``.

``load_bundle`` re-hashes the whole bundle (``registry.open_bundle``) before anything is
read, loads each pair's served model with its calibration, and warms the compiled paths
(the LSTM's XLA single-window function and its batch function, xgboost's first call) so the
first request after a deploy pays no tracing.

Which kind serves a pair: "ensemble" when the bundle saved it; otherwise the only kind
saved; when several single kinds were saved without an ensemble, the one with the lowest
walk-forward MASE in the manifest.

The serving maths also lives here, next to the artifacts it reads:

* features come from ``datasets.feature_frame`` on the newest ``features.SERVING_ROWS`` bars,
  the function training used;
* intervals: the bundle's ``RollingConformal`` settings over the trailing realised residuals,
  i.e. the stored out-of-sample residuals followed by post-training residuals (predictions on
  bars whose targets lie wholly after the training data and are realised in the store);
* confidence: the bundle's ``DirectionCalibrator`` at |prediction| / typical recent error.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_predictor.bundle_layout import CALIBRATION_FILE, PAIR_FILE, bundle_pairs, pair_kinds
from crypto_predictor.calibration import DirectionCalibrator, RollingConformal, direction_score, level_key
from crypto_predictor.datasets import BAR_HOURS, bar_for, feature_frame, features_from_bars, horizon_rows
from crypto_predictor.errors import BundleIntegrityError, DataNotFound, InvalidInput, ModelNotFound
from crypto_predictor.features import SERVING_ROWS, make_target
from crypto_predictor.market.frames import to_utc
from crypto_predictor.registry import ALIASES, alias_state_token, get_aliases, open_bundle, sort_versions

log = logging.getLogger(__name__)

LEVELS = ("80", "95")
FAILED_RETRY_SECONDS = 60  # between two load attempts of a refused bundle
EXTRA_BUNDLES = 2  # explicitly requested versions kept loaded besides production/challenger


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

    def frame(self, candles: pd.DataFrame, context: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(features, bars) from hourly candles: ``datasets.feature_frame``, as in training."""
        return feature_frame(candles, {name: context[name] for name in self.context}, self.bar)

    def frame_from_bars(self, own: pd.DataFrame, context_bars: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``frame`` from bars already made; ``context_bars`` holds the usable context assets only."""
        return features_from_bars(own, {name: context_bars[name] for name in self.context if name in context_bars})

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
        scale = self.conformal.scale(close)
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
                                last: pd.Timestamp) -> tuple[np.ndarray, np.ndarray | None]:
        """Residuals (realised minus predicted log return) and their scales for rows first..last."""
        X, own = self.frame(candles, context)
        X = self._select(X)
        y = make_target(own["close"], self.horizon)
        scale = self.conformal.scale(own["close"].to_numpy(dtype=float))
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
        pred = np.asarray(self.model.predict(X.iloc[start:rows[-1] + 1]), dtype=float)[rows - start]
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

    def predict(self, inputs: PairInputs, stats: IntervalStats | None) -> Prediction:
        # Columns were selected by name in ``inputs``; a plain array skips re-checking them per member.
        values = inputs.values if inputs.values is not None else inputs.X_tail.to_numpy()
        pred = float(self.model.predict_last(values))
        bounds = {key: None for key in LEVELS}
        error_scale = math.nan
        s = 1.0 if inputs.scale is None else inputs.scale
        if stats is not None and math.isfinite(s):
            bounds = {key: (pred + stats.offsets[key][0] * s, pred + stats.offsets[key][1] * s)
                      if key in stats.offsets else None for key in LEVELS}
            error_scale = stats.error_unit * s
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


def choose_kind(bundle, asset: str, timeframe: str) -> str:
    saved = sorted(pair_kinds(bundle, asset, timeframe))
    if not saved:
        raise BundleIntegrityError(f"bundle {bundle.version}: {asset}/{timeframe} has no saved model")
    if "ensemble" in saved or len(saved) == 1:
        return "ensemble" if "ensemble" in saved else saved[0]
    rows = _metrics(bundle.manifest, asset, timeframe)
    return min(saved, key=lambda k: (rows.get(k) or {}).get("mase") or math.inf)


def _metrics(manifest: dict, asset: str, timeframe: str) -> dict:
    overall = (manifest.get("metrics") or {}).get("overall") or {}
    return (overall.get(asset) or {}).get(timeframe) or {}


def _load_pair(bundle, asset: str, timeframe: str) -> ServingPair:
    from crypto_predictor.models import load_model  # late: keeps this module import cheap

    meta = bundle.read_json(asset, timeframe, PAIR_FILE)
    if meta.get("bar") != bar_for(timeframe) or int(meta.get("horizon", -1)) != horizon_rows(timeframe):
        raise BundleIntegrityError(f"bundle {bundle.version}: {asset}/{timeframe} was trained on {meta.get('bar')} "
                                   f"bars with horizon {meta.get('horizon')}; this code serves "
                                   f"{bar_for(timeframe)} bars with horizon {horizon_rows(timeframe)}")
    kind = choose_kind(bundle, asset, timeframe)
    state = bundle.read_json(asset, timeframe, kind, CALIBRATION_FILE)
    bundle.artifact(asset, timeframe, kind, "model.json")  # listed in the manifest, hence verified
    model = load_model(bundle.path / asset / timeframe / kind)
    features = list(meta["features"])
    if model.feature_names_in_ is not None and list(model.feature_names_in_) != features:
        raise BundleIntegrityError(f"bundle {bundle.version}: {asset}/{timeframe} {kind} was fitted on other "
                                   "features than pair.json lists")
    conformal = RollingConformal(**state["conformal"])
    stored = state["residuals"]
    times = pd.DatetimeIndex(pd.to_datetime(pd.Series(stored["time"], dtype=object), utc=True))
    scales = None
    if conformal.vol_span is not None:
        if stored.get("scale") is None:
            raise BundleIntegrityError(f"bundle {bundle.version}: {asset}/{timeframe} {kind}: normalised "
                                       "intervals without stored residual scales")
        scales = np.asarray([np.nan if v is None else v for v in stored["scale"]], dtype=float)
    rows = _metrics(bundle.manifest, asset, timeframe)
    accuracy = (rows.get("ensemble") or rows.get(kind) or {}).get("directional_accuracy")
    return ServingPair(
        version=bundle.version, asset=asset, timeframe=timeframe, bar=meta["bar"], horizon=int(meta["horizon"]),
        features=features, context=list(meta.get("context") or []),
        data_end=to_utc(meta["data_range"][1]), kind=kind, model=model,
        conformal=conformal, calibrator=DirectionCalibrator.from_state(state["direction_calibrator"]),
        stored_times=times, stored_residuals=np.asarray(stored["residual"], dtype=float), stored_scales=scales,
        model_accuracy=None if accuracy is None else float(accuracy))


def load_bundle(models_dir, version: str, warm_up: bool = True) -> LoadedBundle:
    """Verify every sha256, load every pair's served model, warm it up."""
    started = time.perf_counter()
    bundle = open_bundle(Path(models_dir), version)
    pairs = {}
    for asset, timeframe in bundle_pairs(bundle):
        pair = _load_pair(bundle, asset, timeframe)
        if warm_up:
            pair.warm_up()
        pairs[(asset, timeframe)] = pair
    if not pairs:
        raise BundleIntegrityError(f"bundle {bundle.version} holds no {PAIR_FILE}: not a bundle written by training")
    return LoadedBundle(bundle.version, bundle.manifest, pairs, time.perf_counter() - started)


@dataclass(frozen=True)
class Served:
    """What is served, as one immutable snapshot replaced whole on a swap."""

    token: str | None = None  # alias file hash the snapshot was built from
    aliases: dict = field(default_factory=dict)  # alias -> version actually served
    bundles: dict = field(default_factory=dict)  # version -> LoadedBundle


class ModelCache:
    def __init__(self, models_dir, poll_seconds: float = 2.0, now=None):
        self.models_dir = Path(models_dir)
        self.poll_seconds = float(poll_seconds)
        self._now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self.served = Served()
        self.failure: dict | None = None
        self._failed_at = -math.inf
        self._last_poll = -math.inf
        self._extra: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def loaded(self) -> list[str]:
        return sort_versions(set(self.served.bundles) | set(self._extra))

    def refresh(self, force: bool = False) -> bool:
        """Poll the alias file (at most every ``poll_seconds``); load and swap on a change. True if swapped."""
        now = time.monotonic()
        if not force and now - self._last_poll < self.poll_seconds:
            return False
        self._last_poll = now
        try:
            token = alias_state_token(self.models_dir)
        except OSError as exc:
            self.record_failure(None, None, exc)
            return False
        retry = self.failure is not None and now - self._failed_at >= FAILED_RETRY_SECONDS
        if not force and token == self.served.token and not retry:
            return False
        if not self._lock.acquire(blocking=force):
            return False  # another thread is loading; this one keeps serving what is there
        try:
            return self._reload(token)
        finally:
            self._lock.release()

    def record_failure(self, alias, version, exc) -> None:
        self.failure = {"alias": alias, "version": version, "error": f"{type(exc).__name__}: {exc}",
                        "at": self._now().isoformat().replace("+00:00", "Z")}
        self._failed_at = time.monotonic()
        log.error("model %s (%s) refused: %s", version, alias, self.failure["error"])

    def _reload(self, token) -> bool:
        old = self.served
        try:
            wanted = get_aliases(self.models_dir)
        except BundleIntegrityError as exc:
            self.record_failure(None, None, exc)
            return False
        aliases, bundles, failed = {}, {}, False
        for alias in ALIASES:
            version = wanted.get(alias)
            if version is None:
                continue
            loaded = bundles.get(version) or old.bundles.get(version) or self._extra.get(version)
            if loaded is None:
                try:
                    loaded = load_bundle(self.models_dir, version)
                except Exception as exc:  # whatever breaks a load (hash, pickle, h5) refuses the bundle
                    self.record_failure(alias, version, exc)
                    failed = True
                    version = old.aliases.get(alias)
                    loaded = old.bundles.get(version)
                    if loaded is None:
                        continue
            aliases[alias], bundles[version] = version, loaded
        if not failed:
            self.failure = None
        self.served = Served(token, aliases, bundles)
        if aliases != old.aliases:
            log.info("serving %s", aliases)
        return aliases != old.aliases

    def bundle(self, version: str) -> LoadedBundle:
        """A served bundle, or an explicitly requested one (loaded once, the latest few kept)."""
        served = self.served
        if version in served.bundles:
            return served.bundles[version]
        with self._lock:
            if version not in self._extra:
                self._extra[version] = load_bundle(self.models_dir, version)
                while len(self._extra) > EXTRA_BUNDLES:
                    self._extra.popitem(last=False)
            self._extra.move_to_end(version)
            return self._extra[version]
