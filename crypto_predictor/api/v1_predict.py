"""POST /api/v1/predict and /api/v1/predict/batch: cached predictions from the service.

A prediction is cached under ``service.cache_token(...)`` = (asset, timeframe, served
version, newest candle time): it stays valid until the next candle lands or a model
alias moves, and expires after one bar of its timeframe anyway. The newest candle time comes
from the service's memo (LATEST_TIME_TTL_SECONDS, default 1 s), so a cached answer outlives a
newly stored candle by that long at most, and a hit costs no database query. ``metadata.cache_hit``
says whether this response came from the cache.
"""

from __future__ import annotations

import time

from flask import jsonify, request

from crypto_predictor.api import schemas
from crypto_predictor.api.observability import CACHE_LOOKUPS, PREDICTIONS, labelled, note
from crypto_predictor.api.runtime import cache_enabled, cache_get, cache_key, cache_set, client_id, get_service
from crypto_predictor.api.v1 import bp
from crypto_predictor.errors import CryptoPredictorError


def _served(data: dict, cached: bool) -> None:
    """Count a served prediction by version, timeframe and cache.

    A cached answer is not written to the prediction log again: the log's read side counts
    each (version, asset, timeframe, data_as_of) once anyway, and the first serve logged it.
    """
    cached = "true" if cached else "false"
    labelled(PREDICTIONS, str(data.get("model_version")), str(data.get("timeframe")), cached).inc()


def _lookup(service, symbol, timeframe, version, cid, endpoint: str):
    """(cache slot, cached data or None); the slot is None when caching is off.

    A slot is (key, version the token expects): if an alias moved between the token and
    the prediction, the answer must not be filed under the old version's key.
    """
    if not cache_enabled():
        return None, None
    token = tuple(service.cache_token(symbol, timeframe, version, cid))
    key = cache_key("prediction", token)
    data = cache_get(key)
    labelled(CACHE_LOOKUPS, endpoint, "miss" if data is None else "hit").inc()
    return (key, str(token[2])), data


def _store(slot, data: dict, timeframe: str) -> None:
    if slot is not None and str(data.get("model_version")) == slot[1]:
        cache_set(slot[0], data, timeframe)


@bp.post("/predict")
def predict():
    started = time.perf_counter()
    req = schemas.parse_predict(schemas.json_object(request))
    note(symbol=req.symbol, timeframe=req.timeframe)
    service = get_service()
    service.refresh_models()
    cid = client_id()
    slot, data = _lookup(service, req.symbol, req.timeframe, req.model_version, cid, "predict")
    hit = data is not None
    if not hit:
        data = service.predict(req.symbol, req.timeframe, model_version=req.model_version, client_id=cid)
        _store(slot, data, req.timeframe)
    _served(data, hit)
    note(symbol=data.get("symbol"), version=data.get("model_version"), cache_hit=hit)
    return jsonify({
        "status": "success",
        "data": data,
        "metadata": {"processing_time": round(time.perf_counter() - started, 6), "cache_hit": hit,
                     "model_accuracy": data.get("model_accuracy")},
    })


@bp.post("/predict/batch")
def predict_batch():
    started = time.perf_counter()
    req = schemas.parse_batch(schemas.json_object(request))
    note(symbol=",".join(req.symbols)[:200], timeframe=req.timeframe)
    service = get_service()
    service.refresh_models()
    cid = client_id()
    version = service.resolve_version(req.model_version, cid)  # unknown version: 404 for the whole batch
    entries, slots, misses = [None] * len(req.symbols), [None] * len(req.symbols), []
    for i, symbol in enumerate(req.symbols):
        try:
            slots[i], data = _lookup(service, symbol, req.timeframe, req.model_version, cid, "batch")
        except CryptoPredictorError:
            data = None  # the service reports this symbol's problem in its own entry below
        if data is None:
            misses.append(i)
        else:
            _served(data, True)
            entries[i] = {"symbol": symbol, "status": "success", "data": data, "cache_hit": True}
    if misses:
        fresh = service.predict_batch([req.symbols[i] for i in misses], req.timeframe,
                                      model_version=req.model_version, client_id=cid)
        for i, entry in zip(misses, fresh):
            entry = dict(entry, cache_hit=False)
            if entry.get("status") == "success":
                _store(slots[i], entry["data"], req.timeframe)
                _served(entry["data"], False)
            entries[i] = entry
    ok = sum(1 for e in entries if e.get("status") == "success")
    hits = sum(1 for e in entries if e.get("cache_hit"))
    note(version=version, cache_hit=hits == len(entries))
    return jsonify({
        "status": "success",
        "data": entries,
        "metadata": {"processing_time": round(time.perf_counter() - started, 6), "count": len(entries),
                     "succeeded": ok, "failed": len(entries) - ok, "cache_hits": hits, "model_version": version},
    })
