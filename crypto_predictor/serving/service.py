"""PredictionService: what the API calls. No Flask here.

Lifecycle. ``__init__`` loads nothing (the app is created in the Gunicorn master); ``start()``
loads the production and challenger bundles in the worker. ``refresh_models()`` reads the
alias file's hash at most every MODEL_POLL_SECONDS; on a change it loads the new bundle(s)
completely (verified, warmed up) and swaps one immutable snapshot, so requests already running
keep the objects they hold. A bundle that fails to load is refused, the previous one keeps
serving and ``health()`` shows the refusal (``snapshot.ModelCache``). Every public call runs
the (cheap) refresh check itself, so the API does not have to. The read-only reports
(versions, performance, history, health) live in ``status.StatusReports``.

Data. Predictions use stored candles (the newest SERVING_ROWS bars), read through
``data.ServingData``, which holds every memo of the worker: newest candle times from a short
memo (LATEST_TIME_TTL_SECONDS), windows, bars, feature rows and model inputs kept per newest
candle time, so an uncached prediction after the first one of a candle runs the models and
the interval maths only; the invalidation rule (a new candle, and every FEATURE_CACHE_SECONDS
for corrected older candles) is written down in data.py.
A request never waits on a provider: with a live source, a background thread per worker
(``live_refresh.LiveRefresher``, every LIVE_REFRESH_SECONDS, one worker at a time through a
database lock) keeps the served assets' candles current, and requests read the store. Stored
data older than one bar answers with ``stale=True``; past MAX_DATA_AGE_HOURS ``DataTooOld``
(503 with Retry-After) is raised. With MARKET_DATA_SOURCE=csv there is no live source: stored
data is authoritative, ``stale`` is False and the age limit does not apply (the shared CSVs end
in 2023). ``current_price`` is the close of the newest bar the model used (for 7d/30d: the last
complete UTC day), because that is the price the predicted return applies to.
"""

from __future__ import annotations

import hashlib
import logging
import functools
import math
import time
from collections import namedtuple
from pathlib import Path

import pandas as pd

from crypto_predictor.errors import CryptoPredictorError, DataNotFound, DataTooOld, ServiceUnavailable
from crypto_predictor.market import get_source
from crypto_predictor.market.store import CandleStore
from crypto_predictor.registry.aliases import ALIASES
from crypto_predictor.registry.store import open_model_store
from crypto_predictor.serving.data import ServingData
from crypto_predictor.serving.explain import Explainer
from crypto_predictor.serving.live_refresh import LiveRefresher
from crypto_predictor.serving.pairs import LEVELS
from crypto_predictor.serving.prediction_log import PredictionLogWriter, ensure_table
from crypto_predictor.serving.snapshot import ModelCache
from crypto_predictor.serving.status import StatusReports
from crypto_predictor.symbols import check_timeframe, resolve
from crypto_predictor.timeutil import iso

log = logging.getLogger(__name__)

HOUR = pd.Timedelta(hours=1)
# The newest candle times of the served assets, formatted once each (a cache token is built per request).
_token_time = functools.lru_cache(maxsize=4096)(iso)
FLAT_BAND = 1e-4  # |predicted change| below 0.01 % is called "flat"

Fresh = namedtuple("Fresh", "latest stale")
# What a pair's prediction needs besides its model's output: made first for every pair of a batch.
Prepared = namedtuple("Prepared", "inputs stats as_of target latest")


def _copy(data: dict) -> dict:
    """A caller's own copy (duplicates in a batch share one computed result)."""
    return {**data, "interval": {k: None if v is None else list(v) for k, v in data["interval"].items()}}


def ab_bucket(client_id) -> float:
    """A client's sticky position in [0, 1): the same id always lands in the same place."""
    digest = hashlib.sha256(str(client_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class PredictionService:
    def __init__(self, config, store=None, clock=time.time, source=None):
        self.config = config
        self.models_dir = Path(config.MODELS_DIR)
        if store is None:
            store = CandleStore(config.DATABASE_URL)
        self.store = store
        self.clock = clock
        if source is None and config.MARKET_DATA_SOURCE != "csv":
            source = get_source(config.MARKET_DATA_SOURCE, config)
        self.source = source
        self.ab_share = float(getattr(config, "AB_CHALLENGER_SHARE", 0))
        self.max_age_hours = float(getattr(config, "MAX_DATA_AGE_HOURS", 0) or 0)  # 0: no limit
        self.log = PredictionLogWriter(store.engine) if getattr(config, "PREDICTION_LOG", True) else None
        self.model_store = open_model_store(self.models_dir, getattr(config, "MODEL_STORE_URL", ""))
        self.models = ModelCache(self.models_dir, float(getattr(config, "MODEL_POLL_SECONDS", 2)), self.now,
                                 store=self.model_store)
        self._started = False
        self.data = ServingData(store, ttl=float(getattr(config, "LATEST_TIME_TTL_SECONDS", 1.0)),
                                max_age=float(getattr(config, "FEATURE_CACHE_SECONDS", 300)))
        every = float(getattr(config, "LIVE_REFRESH_SECONDS", 60) or 0)
        self.refresher = (LiveRefresher(source, store, self.served_assets, self.now, every)
                          if source is not None and every > 0 else None)
        self.status = StatusReports(self)
        self.explainer = Explainer()

    # ---------------------------------------------------------------- models

    def start(self) -> None:
        self._started = True
        self.refresh_models(force=True)
        if self.refresher is not None:
            self.refresher.start()
        if self.log is not None:
            try:
                ensure_table(self.store.engine)
            except Exception as exc:  # the log is optional; predictions must not depend on it
                log.warning("prediction log table unavailable: %s", exc)

    def refresh_models(self, force=False) -> bool:
        swapped = self.models.refresh(force)
        if swapped:
            self.data.keep_versions(self.models.loaded())
        return swapped

    def snapshot(self):
        """What is served now (started, and the aliases polled, first)."""
        if not self._started:
            self.start()
        else:
            self.refresh_models()
        return self.models.served

    def _route(self, model_version, client_id):
        """(version, A/B group, snapshot): explicit version or alias wins, else sticky A/B by client id."""
        served = self.snapshot()
        if model_version is not None and str(model_version).strip():
            name = str(model_version).strip()
            if name in ALIASES:
                if name not in served.aliases:
                    raise ServiceUnavailable(f"no {name} model is loaded")
                return served.aliases[name], name, served
            return self.model_store.resolve(name), "explicit", served
        production = served.aliases.get("production")
        if production is None:
            raise ServiceUnavailable("no production model is loaded; deploy one (deploy_model.py) or see /health")
        challenger = served.aliases.get("challenger")
        if (challenger and challenger != production and client_id is not None and self.ab_share > 0
                and ab_bucket(client_id) < self.ab_share):
            return challenger, "challenger", served
        return production, "production", served

    def resolve_version(self, model_version, client_id) -> str:
        return self._route(model_version, client_id)[0]

    # ---------------------------------------------------------------- data

    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.clock(), unit="s", tz="UTC")

    def _fresh_many(self, assets, now: pd.Timestamp) -> dict:
        """asset -> Fresh, or the CryptoPredictorError that asset met; one store query for all."""
        latest = self.data.latest(assets)
        out = {}
        for asset in assets:
            try:
                out[asset] = self._fresh(asset, latest[asset], now)
            except CryptoPredictorError as exc:
                out[asset] = exc
        return out

    def served_assets(self) -> list[str]:
        """Every asset a loaded bundle predicts or uses as context (what the live refresher keeps current)."""
        assets = {}
        for bundle in list(self.models.served.bundles.values()):
            for pair in bundle.pairs.values():
                assets.update(dict.fromkeys([pair.asset, *pair.context]))
        return list(assets)

    def _fresh(self, asset: str, latest, now: pd.Timestamp) -> Fresh:
        """Newest stored candle and whether it is stale; raises DataTooOld. Never calls a provider."""
        if latest is None:
            raise DataNotFound(f"no hourly candles stored for {asset}; run ingest first", asset=asset)
        if self.source is None:
            return Fresh(latest, False)
        age = now - (latest + HOUR)
        limit = self.max_age_hours
        if limit > 0 and age > pd.Timedelta(hours=limit):
            retry = self.refresher.every if self.refresher is not None else 60
            raise DataTooOld(f"{asset}: newest candle closed {iso(latest + HOUR)}, more than {limit:g} h ago; the "
                             "live refresh has not brought newer ones (provider down?); try again later",
                             asset=asset, data_as_of=iso(latest + HOUR), retry_after=retry)
        return Fresh(latest, age >= HOUR)

    # ---------------------------------------------------------------- predictions

    def _pair_inputs(self, pair, fresh: dict) -> Prepared:
        """Inputs, interval stats, data_as_of, target_time and latest candle times of a pair's newest bar."""
        latest = {a: fresh[a].latest for a in [pair.asset, *pair.context]}
        inputs, as_of, target = self.data.pair_inputs(pair, latest)
        return Prepared(inputs, self.data.interval_stats(pair, inputs.bar_time, latest), as_of, target, latest)

    def _predict_pair(self, pair, fresh: dict, now_iso: str, prepared=None, output=None) -> dict:
        inputs, stats, as_of, target, latest = prepared or self._pair_inputs(pair, fresh)
        p = pair.predict(inputs, stats, output)
        current = inputs.close
        factor = math.exp(p.log_return)
        change = factor - 1.0
        return {
            "symbol": pair.asset,
            "current_price": current,
            "predicted_price": current * factor,
            "confidence": round(p.confidence, 4),
            "change_percentage": round(change * 100, 4),
            "timeframe": pair.timeframe,
            "prediction_time": now_iso,
            "model_version": pair.version,
            "target_time": target,
            "direction": "flat" if abs(change) < FLAT_BAND else ("up" if change > 0 else "down"),
            "interval": {k: None if p.bounds[k] is None else
                         [current * math.exp(p.bounds[k][0]), current * math.exp(p.bounds[k][1])] for k in LEVELS},
            "data_as_of": as_of,
            "stale": any(fresh[a].stale for a in latest),
            "model_accuracy": pair.model_accuracy,
            "skill": pair.skill,
            # the forecast SD of the log return to target_time (the intervals scale with a power of it)
            "volatility": None if inputs.scale is None or not math.isfinite(inputs.scale)
            else round(pair.conformal.volatility(inputs.scale), 6),
        }

    def _predict_many(self, symbols, timeframe, model_version, client_id) -> list:
        """One result per symbol: a data dict or the CryptoPredictorError that symbol met.

        Bundles hold one model per (asset, timeframe), so each distinct asset costs one
        ``predict_last`` per member model; duplicates (BTC, bitcoin) are computed once, and every
        candle window (the context asset included) is loaded once for the whole batch, and the
        newest candle times of all the assets come from one memoised query.
        """
        timeframe = check_timeframe(timeframe)
        version, group, served = self._route(model_version, client_id)
        # From the snapshot routing used: a swap meanwhile must not turn this into a load.
        bundle = served.bundles.get(version) or self.models.bundle(version)
        now = self.now()
        out, pairs = [], {}
        for symbol in symbols:
            try:
                asset = resolve(symbol).id
                pairs[asset] = bundle.pair(asset, timeframe)
                out.append(asset)
            except CryptoPredictorError as exc:
                out.append(exc)
        self.data.expired()  # the periodic rebuild that catches corrected older candles
        fresh = self._fresh_many(dict.fromkeys(a for p in pairs.values() for a in [p.asset, *p.context]), now)
        now_iso = iso(now)
        results, prepared = {}, {}
        for asset, pair in pairs.items():
            try:
                failed = [fresh[a] for a in [asset, *pair.context] if isinstance(fresh[a], Exception)]
                if failed:
                    raise failed[0]
                prepared[asset] = self._pair_inputs(pair, fresh)
            except Exception as exc:
                results[asset] = self._failure(exc, asset, timeframe)
        outputs = self._model_outputs(pairs, prepared)
        for asset, ready in prepared.items():
            try:
                results[asset] = self._predict_pair(pairs[asset], fresh, now_iso, ready, outputs.get(asset))
                self._log(results[asset], pairs[asset].kind, group)
            except Exception as exc:
                results[asset] = self._failure(exc, asset, timeframe)
        return [item if isinstance(item, Exception) else results[item] for item in out]

    @staticmethod
    def _failure(exc: Exception, asset: str, timeframe: str) -> CryptoPredictorError:
        if isinstance(exc, CryptoPredictorError):
            return exc
        # a bug in one pair must not take the other symbols of a batch down
        log.error("prediction failed for %s %s", asset, timeframe, exc_info=exc)
        return CryptoPredictorError(f"internal error while predicting {asset} {timeframe}")

    @staticmethod
    def _model_outputs(pairs: dict, prepared: dict) -> dict:
        """asset -> its model's prediction, with one call per shared (global) model for the whole batch;
        {} when that fails, and each pair then calls its own model."""
        assets = [a for a in prepared if pairs[a].shrink]
        if len(assets) < 2:
            return {}
        from crypto_predictor.models.batch import predict_each  # late: models load where a bundle does

        try:
            values = predict_each([pairs[a].model for a in assets], [prepared[a].inputs.array() for a in assets])
        except Exception:
            log.exception("batched model call failed; predicting pair by pair")
            return {}
        return dict(zip(assets, values))

    def _log(self, data: dict, kind: str, group: str) -> None:
        if self.log is None:
            return
        iv = data["interval"]
        self.log.record({
            "asset": data["symbol"], "timeframe": data["timeframe"], "model_version": data["model_version"],
            "kind": kind, "client_ab_group": group, "prediction_time": data["prediction_time"],
            "data_as_of": data["data_as_of"], "target_time": data["target_time"],
            "current_price": data["current_price"], "predicted_price": data["predicted_price"],
            "lower80": iv["80"] and iv["80"][0], "upper80": iv["80"] and iv["80"][1],
            "lower95": iv["95"] and iv["95"][0], "upper95": iv["95"] and iv["95"][1],
            "confidence": data["confidence"]})

    def predict(self, symbol, timeframe="24h", model_version=None, client_id=None) -> dict:
        result = self._predict_many([symbol], timeframe, model_version, client_id)[0]
        if isinstance(result, Exception):
            raise result
        return result  # made for this call alone: no copy needed

    def predict_batch(self, symbols: list, timeframe="24h", model_version=None, client_id=None) -> list[dict]:
        entries, given = [], set()
        for symbol, result in zip(symbols, self._predict_many(list(symbols), timeframe, model_version, client_id)):
            if isinstance(result, Exception):
                entries.append({"symbol": symbol, "status": "error",
                                "error": {"code": result.code, "message": result.message}})
            else:  # made for this call: only a duplicate (BTC, bitcoin) needs a copy of its own
                entries.append({"symbol": symbol, "status": "success",
                                "data": _copy(result) if id(result) in given else result})
                given.add(id(result))
        return entries

    def cache_token(self, symbol, timeframe, model_version=None, client_id=None) -> tuple:
        asset = resolve(symbol).id  # an unknown symbol is reported before the timeframe and version
        return self.cache_tokens([asset], timeframe, model_version, client_id)[0]

    def cache_tokens(self, symbols, timeframe, model_version=None, client_id=None) -> list:
        """``cache_token`` of each symbol, or the CryptoPredictorError its symbol met: the version is
        routed once and the newest candle times of all the assets come from one memo read."""
        timeframe = check_timeframe(timeframe)
        version = self.resolve_version(model_version, client_id)
        assets = []
        for symbol in symbols:
            try:
                assets.append(resolve(symbol).id)
            except CryptoPredictorError as exc:
                assets.append(exc)
        # memoised: see serving_data.py for the bound
        latest = self.data.latest(dict.fromkeys(a for a in assets if isinstance(a, str)))
        return [a if isinstance(a, Exception) else (a, timeframe, version, _token_time(latest[a])) for a in assets]

    def explain(self, symbol, timeframe="24h", model_version=None, client_id=None) -> dict:
        """The top feature contributions of the prediction ``predict`` makes with the same arguments
        (``serving.explain``), computed once per newest candle."""
        version, _, served = self._route(model_version, client_id)
        bundle = served.bundles.get(version) or self.models.bundle(version)
        pair = bundle.pair(resolve(symbol).id, check_timeframe(timeframe))
        fresh = self._fresh_many([pair.asset, *pair.context], self.now())
        for item in fresh.values():
            if isinstance(item, Exception):
                raise item
        inputs, _, _ = self.data.pair_inputs(pair, {a: f.latest for a, f in fresh.items()})
        return self.explainer.explain(pair, inputs)

    # ---------------------------------------------------------------- introspection

    def served_manifest(self, alias: str = "production") -> tuple:
        """(version, manifest) that ``alias`` serves now, from the loaded bundle (no disk read);
        (None, {}) when nothing is served under it."""
        served = self.snapshot()
        version = served.aliases.get(alias)
        bundle = served.bundles.get(version)
        return version, {} if bundle is None else bundle.manifest

    def versions(self) -> dict:
        return self.status.versions()

    def performance(self, version, source: tuple | None = None) -> dict:
        return self.status.performance(version, source)

    def performance_token(self, version) -> tuple:
        return self.status.performance_token(version)

    def history(self, symbol, limit=50) -> list[dict]:
        return self.status.history(symbol, limit)

    def health(self) -> dict:
        return self.status.health()
