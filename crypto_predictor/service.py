"""PredictionService: what the API calls. No Flask here.

Lifecycle. ``__init__`` loads nothing (the app is created in the Gunicorn master); ``start()``
loads the production and challenger bundles in the worker. ``refresh_models()`` reads the
alias file's hash at most every MODEL_POLL_SECONDS; on a change it loads the new bundle(s)
completely (verified, warmed up) and swaps one immutable snapshot, so requests already running
keep the objects they hold. A bundle that fails to load is refused, the previous one keeps
serving and ``health()`` shows the refusal (``model_cache.ModelCache``). Every public call runs
the (cheap) refresh check itself, so the API does not have to.

Data. Predictions use stored candles (the newest SERVING_ROWS bars), read through
``serving_data.ServingData``: newest candle times from a short memo (LATEST_TIME_TTL_SECONDS),
windows and bars kept per newest candle time. The newest feature rows of each pair (and the
features they come from) are kept the same way, so an uncached prediction after the first one
of a candle runs the models and the interval maths only; the invalidation rule (a new candle,
this worker's own live refresh, and every FEATURE_CACHE_SECONDS for corrected older candles)
is written down in serving_data.py. With a live source,
missing closed candles are ingested first (at most every LIVE_RETRY_SECONDS per asset); if the
provider fails the stored data answers with ``stale=True``, and past MAX_DATA_AGE_HOURS
``DataTooOld`` is raised. With MARKET_DATA_SOURCE=csv there is no live source: stored data is
authoritative, ``stale`` is False and the age limit does not apply (the shared CSVs end in
2021). ``current_price`` is the close of the newest bar the model used (for 7d/30d: the last
complete UTC day), because that is the price the predicted return applies to.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import namedtuple
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from crypto_predictor import prediction_log as plog
from crypto_predictor.datasets import context_usable
from crypto_predictor.errors import CryptoPredictorError, DataNotFound, DataTooOld, ServiceUnavailable
from crypto_predictor.model_cache import LEVELS, ModelCache
from crypto_predictor.registry import ALIASES, get_aliases, list_versions, load_manifest, resolve_version
from crypto_predictor.serving_data import ServingData
from crypto_predictor.symbols import TIMEFRAMES, check_timeframe, resolve

log = logging.getLogger(__name__)

HOUR = pd.Timedelta(hours=1)
LIVE_RETRY_SECONDS = 30  # between two live fetches of one asset (provider down: no hammering)
VERIFY_EVERY_SECONDS = 60  # prediction-log verification from history()/performance()
FLAT_BAND = 1e-4  # |predicted change| below 0.01 % is called "flat"
WALK_FORWARD_FIELDS = ("n", "mae", "rmse", "mase", "r2_oos", "directional_accuracy",
                       "top_decile_directional_accuracy", "coverage_80", "coverage_95", "interval_width_80")

Fresh = namedtuple("Fresh", "latest stale")


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
            from crypto_predictor.market.store import CandleStore

            store = CandleStore(config.DATABASE_URL)
        self.store = store
        self.clock = clock
        if source is None and config.MARKET_DATA_SOURCE != "csv":
            from crypto_predictor.market import get_source

            source = get_source(config.MARKET_DATA_SOURCE, config)
        self.source = source
        self.ab_share = float(getattr(config, "AB_CHALLENGER_SHARE", 0))
        self.max_age_hours = float(getattr(config, "MAX_DATA_AGE_HOURS", 0) or 0)  # 0: no limit
        self.log = plog.PredictionLogWriter(store.engine) if getattr(config, "PREDICTION_LOG", True) else None
        self.models = ModelCache(self.models_dir, float(getattr(config, "MODEL_POLL_SECONDS", 2)), self._now)
        self._started = False
        self.data = ServingData(store, ttl=float(getattr(config, "LATEST_TIME_TTL_SECONDS", 1.0)),
                                max_age=float(getattr(config, "FEATURE_CACHE_SECONDS", 300)))
        self._stats: dict = {}  # (version, asset, timeframe) -> (newest bar, IntervalStats | None)
        self._frames: dict = {}  # (asset, bar) -> (key, features, bars) of the newest candles
        self._inputs: dict = {}  # (version, asset, timeframe) -> (key, PairInputs, data_as_of, target_time)
        self._fetched: dict = {}  # asset -> monotonic time of the last live fetch
        self._verified = -math.inf

    # ---------------------------------------------------------------- models

    def start(self) -> None:
        self._started = True
        self.refresh_models(force=True)
        if self.log is not None:
            try:
                plog.ensure_table(self.store.engine)
            except Exception as exc:  # the log is optional; predictions must not depend on it
                log.warning("prediction log table unavailable: %s", exc)

    def refresh_models(self, force=False) -> bool:
        swapped = self.models.refresh(force)
        if swapped:  # forget interval statistics and inputs of versions no longer loaded
            keep = set(self.models.loaded())
            self._stats = {k: v for k, v in self._stats.items() if k[0] in keep}
            self._inputs = {k: v for k, v in self._inputs.items() if k[0] in keep}
        return swapped

    def _current(self):
        if not self._started:
            self.start()
        else:
            self.refresh_models()
        return self.models.served

    def _route(self, model_version, client_id):
        """(version, A/B group, snapshot): explicit version or alias wins, else sticky A/B by client id."""
        served = self._current()
        if model_version is not None and str(model_version).strip():
            name = str(model_version).strip()
            if name in ALIASES:
                if name not in served.aliases:
                    raise ServiceUnavailable(f"no {name} model is loaded")
                return served.aliases[name], name, served
            return resolve_version(self.models_dir, name), "explicit", served
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

    def _now(self) -> pd.Timestamp:
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

    def _fresh(self, asset: str, latest, now: pd.Timestamp) -> Fresh:
        """Newest stored candle, after a live refresh when one is due; raises DataTooOld."""
        if self.source is None:
            if latest is None:
                raise DataNotFound(f"no hourly candles stored for {asset}; run ingest first", asset=asset)
            return Fresh(latest, False)
        due = latest is None or now - (latest + HOUR) >= HOUR  # a newer candle has closed
        last_try = self._fetched.get(asset, -math.inf)
        if due and time.monotonic() - last_try >= LIVE_RETRY_SECONDS:
            self._fetched[asset] = time.monotonic()
            from crypto_predictor.market.ingest import ingest_asset

            start = None if latest is None else latest + HOUR
            try:
                ingest_asset(self.source, self.store, asset, "1h", start=start)
            except CryptoPredictorError as exc:
                log.warning("live refresh of %s failed; serving stored data: %s", asset, exc)
            self._forget(asset)  # whatever it stored (even before failing) is seen now
            latest = self.data.query_latest([asset])[asset]
        if latest is None:
            raise DataNotFound(f"no hourly candles stored for {asset} and the live source gave none", asset=asset)
        age = now - (latest + HOUR)
        limit = self.max_age_hours
        if limit > 0 and age > pd.Timedelta(hours=limit):
            raise DataTooOld(f"{asset}: newest candle closed {plog.iso(latest + HOUR)}, more than {limit:g} h ago, "
                             "and the live source could not refresh it; try again later",
                             asset=asset, data_as_of=plog.iso(latest + HOUR), retry_after=LIVE_RETRY_SECONDS)
        return Fresh(latest, age >= HOUR)

    def _forget(self, asset: str) -> None:
        """This worker stored candles of ``asset`` (possibly correcting older ones): rebuild from them.
        Features are dropped whole: any of them may use the asset as context, and this is hourly at most."""
        self.data.forget(asset)
        self._frames.clear()
        self._inputs.clear()

    def _interval_stats(self, pair, newest_bar, latest: dict):
        key = (pair.version, pair.asset, pair.timeframe)
        cached = self._stats.get(key)
        if cached is not None and cached[0] == newest_bar:
            return cached[1]
        span = pair.post_training_range(newest_bar)
        post, scales = None, None
        if span is not None:
            start = pair.window_start(latest[pair.asset], span[0] - (pair.context_rows - 1) * pair.step)
            own = self.data.window(pair.asset, start, latest[pair.asset])
            ctx = {c: self.data.window(c, start, latest[c]) for c in pair.context}
            post, scales = pair.post_training_residuals(own, ctx, *span)
        stats = pair.interval_stats(post, scales)
        self._stats[key] = (newest_bar, stats)
        return stats

    # ---------------------------------------------------------------- predictions

    def _features(self, pair, start: pd.Timestamp, latest: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(features, bars) for the pair's window; 1h and 24h (7d and 30d) pairs of an asset share
        them, and a context asset's bars are made once for every pair using them."""
        key = (pair.asset, pair.bar, start, tuple((a, latest[a]) for a in sorted(latest)))
        cached = self._frames.get((pair.asset, pair.bar))
        if cached is None or cached[0] != key:
            own, _ = self.data.bars(pair.asset, pair.bar, start, latest[pair.asset])
            ctx = {}
            for name in pair.context:
                frame, n_candles = self.data.bars(name, pair.bar, start, latest[name])
                if context_usable(n_candles):
                    ctx[name] = frame
            cached = self._frames[(pair.asset, pair.bar)] = (key, *pair.frame_from_bars(own, ctx))
        return cached[1], cached[2]

    def _pair_inputs(self, pair, latest: dict) -> tuple:
        """(PairInputs, data_as_of, target_time) of the pair's newest bar, made once per newest candle times."""
        key = tuple((a, latest[a]) for a in sorted(latest))  # the window start follows from these
        slot = (pair.version, pair.asset, pair.timeframe)
        entry = self._inputs.get(slot)
        if entry is None or entry[0] != key:
            inputs = pair.inputs(*self._features(pair, pair.window_start(latest[pair.asset]), latest))
            as_of = inputs.bar_time + pair.step
            entry = self._inputs[slot] = (key, inputs, plog.iso(as_of),
                                          plog.iso(as_of + pd.Timedelta(hours=TIMEFRAMES[pair.timeframe])))
        return entry[1:]

    def _predict_pair(self, pair, fresh: dict, now_iso: str) -> dict:
        latest = {a: fresh[a].latest for a in [pair.asset, *pair.context]}
        inputs, as_of, target = self._pair_inputs(pair, latest)
        stats = self._interval_stats(pair, inputs.bar_time, latest)
        p = pair.predict(inputs, stats)
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
        now = self._now()
        out, pairs = [], {}
        for symbol in symbols:
            try:
                asset = resolve(symbol).id
                pairs[asset] = bundle.pair(asset, timeframe)
                out.append(asset)
            except CryptoPredictorError as exc:
                out.append(exc)
        if self.data.expired():  # the periodic rebuild that catches corrected older candles
            self._frames.clear()
            self._inputs.clear()
        fresh = self._fresh_many(dict.fromkeys(a for p in pairs.values() for a in [p.asset, *p.context]), now)
        now_iso = plog.iso(now)
        results = {}
        for asset, pair in pairs.items():
            try:
                failed = [fresh[a] for a in [asset, *pair.context] if isinstance(fresh[a], Exception)]
                if failed:
                    raise failed[0]
                results[asset] = self._predict_pair(pair, fresh, now_iso)
                self._log(results[asset], pair.kind, group)
            except CryptoPredictorError as exc:
                results[asset] = exc
            except Exception:  # a bug in one pair must not take the other symbols of a batch down
                log.exception("prediction failed for %s %s", asset, timeframe)
                results[asset] = CryptoPredictorError(f"internal error while predicting {asset} {timeframe}")
        return [item if isinstance(item, Exception) else results[item] for item in out]

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
        entries = []
        for symbol, result in zip(symbols, self._predict_many(list(symbols), timeframe, model_version, client_id)):
            if isinstance(result, Exception):
                entries.append({"symbol": symbol, "status": "error",
                                "error": {"code": result.code, "message": result.message}})
            else:
                entries.append({"symbol": symbol, "status": "success", "data": _copy(result)})
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
        return [a if isinstance(a, Exception) else (a, timeframe, version, plog.iso(latest[a])) for a in assets]

    # ---------------------------------------------------------------- introspection

    def served_manifest(self, alias: str = "production") -> tuple:
        """(version, manifest) that ``alias`` serves now, from the loaded bundle (no disk read);
        (None, {}) when nothing is served under it."""
        served = self._current()
        version = served.aliases.get(alias)
        bundle = served.bundles.get(version)
        return version, {} if bundle is None else bundle.manifest

    def versions(self) -> dict:
        served = self._current()
        rows = [{k: v for k, v in row.items() if k != "path"} for row in list_versions(self.models_dir)]
        return {"versions": rows, "aliases": get_aliases(self.models_dir), "serving": dict(served.aliases),
                "loaded": self.models.loaded()}

    def _verify_log(self) -> None:
        if self.log is None or time.monotonic() - self._verified < VERIFY_EVERY_SECONDS:
            return
        self._verified = time.monotonic()
        self.log.flush(timeout=2.0)
        try:
            plog.verify(self.store)
        except Exception as exc:  # live figures are then a little behind, nothing worse
            log.warning("prediction log verification failed: %s", exc)

    def performance(self, version) -> dict:
        served = self._current()
        name = version if version not in (None, "") else "production"
        if name in ALIASES and name in served.aliases:
            resolved = served.aliases[name]
        else:
            resolved = resolve_version(self.models_dir, name)
        bundle = served.bundles.get(resolved)  # a served version's manifest is already loaded
        manifest = bundle.manifest if bundle is not None else load_manifest(self.models_dir / resolved)
        overall = (manifest.get("metrics") or {}).get("overall") or {}
        walk_forward = {asset: {tf: {kind: {k: row.get(k) for k in WALK_FORWARD_FIELDS} for kind, row in kinds.items()}
                                for tf, kinds in tfs.items()} for asset, tfs in overall.items()}
        out = {"version": resolved, "created_at": manifest.get("created_at"), "data_range": manifest.get("data_range"),
               "walk_forward": walk_forward, "live": [], "ab_test": None}
        if self.log is None:
            return out
        self._verify_log()
        engine = self.store.engine
        out["live"] = plog.live_accuracy(engine, version=resolved)

        def overall_live(v):
            rows = plog.live_accuracy(engine, version=v, by=())
            return {"version": v, "live": rows[0] if rows and rows[0]["n"] else None}

        if served.aliases.get("challenger"):
            out["ab_test"] = {"challenger_share": self.ab_share,
                              **{alias: overall_live(served.aliases[alias]) for alias in served.aliases}}
        return out

    def history(self, symbol, limit=50) -> list[dict]:
        asset = resolve(symbol).id
        if self.log is None:
            return []
        self._verify_log()
        return plog.history(self.store.engine, asset, max(1, min(int(limit), 1000)))

    def health(self) -> dict:
        try:
            served = self._current()
        except Exception as exc:  # health answers even when loading itself blows up
            served = self.models.served
            self.models.record_failure(None, None, exc)
        production = served.aliases.get("production")
        model = {"ok": production is not None, "version": production, "challenger": served.aliases.get("challenger"),
                 "loaded": self.models.loaded(), "refused": self.models.failure}
        checks = {"model": model}
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        checks["data"] = self._data_check(served, production) if checks["database"]["ok"] else {"ok": False}
        if self.log is not None:
            checks["prediction_log"] = {"ok": True, **self.log.stats()}
        ok = all(checks[k]["ok"] for k in ("model", "database", "data"))
        return {"ok": ok, "model_version": production, "checks": checks}

    def _data_check(self, served, production) -> dict:
        bundle = served.bundles.get(production)
        assets = sorted({a for a, _ in bundle.pairs}) if bundle else ["bitcoin"]
        now = self._now()
        ages = {}
        for asset, latest in self.data.query_latest(assets).items():  # health reads the store itself
            ages[asset] = None if latest is None else round((now - latest - HOUR).total_seconds() / 3600, 2)
        known = [a for a in ages.values() if a is not None]
        ok = bool(known) and len(known) == len(ages)
        if self.source is not None and self.max_age_hours > 0:
            ok = ok and max(known) <= self.max_age_hours
        return {"ok": ok, "age_hours": max(known) if known else None, "assets": ages,
                "live_source": None if self.source is None else getattr(self.source, "name", "custom")}
