"""POST /api/v1/predict and /api/v1/predict/batch: cached predictions from the service.

A prediction is cached under ``service.cache_token(...)`` = (asset, timeframe, served
version, newest candle time): it stays valid until the next candle lands or a model
alias moves, and expires after one bar of its timeframe anyway. The newest candle time comes
from the service's memo (LATEST_TIME_TTL_SECONDS, default 1 s), so a cached answer outlives a
newly stored candle by that long at most, and a hit costs no database query. ``metadata.cache_hit``
says whether this response came from the cache.

What is cached is the prediction already serialised to JSON plus the few fields the response
metadata, log line and metrics need (``_cached``): a hit splices those bytes into the response
instead of unpickling a dict and encoding it again. The key's "json" tag keeps these entries
apart from the plain dicts older builds stored in a shared Redis.
"""

from __future__ import annotations

import json
import math
import time

import pandas as pd
from flask import Blueprint, current_app, jsonify

from crypto_predictor.api.explanation_schema import EXPLAIN_DOC
from crypto_predictor.api.http_cache import CONDITIONAL_HEADERS, conditional, etag, next_candle_max_age
from crypto_predictor.api.observability import CACHE_LOOKUPS, PREDICTIONS, labelled, note
from crypto_predictor.api.operations import operation
from crypto_predictor.api.runtime import (cache_enabled, cache_get, cache_get_many, cache_key, cache_set, client_id,
                                          get_service)
from crypto_predictor.api.schemas import Batch, BatchRequest, Prediction, PredictQuery, PredictRequest
from crypto_predictor.errors import CryptoPredictorError

bp = Blueprint("predict", __name__)


# A cache entry: (data as JSON bytes, symbol, model_version, timeframe, model_accuracy).
_JSON, _SYMBOL, _VERSION, _TIMEFRAME, _ACCURACY = range(5)


def _to_json(value) -> bytes:
    """``value`` as jsonify encodes it (the app's JSON provider, compact), without a Response."""
    return current_app.json.dumps(value, separators=(",", ":")).encode()


def _cached(data: dict) -> tuple:
    return (_to_json(data), data.get("symbol"), data.get("model_version"), data.get("timeframe"),
            data.get("model_accuracy"))


def _served(version, timeframe, cached: bool) -> None:
    """Count a served prediction by version, timeframe and cache.

    A cached answer is not written to the prediction log again: the log's read side counts
    each (version, asset, timeframe, data_as_of) once anyway, and the first serve logged it.
    """
    labelled(PREDICTIONS, str(version), str(timeframe), "true" if cached else "false").inc()


def _slot(token: tuple) -> tuple[str, str]:
    """The cache slot of a ``service.cache_token``: (key, version the token expects). If an alias
    moved between the token and the prediction, the answer must not be filed under the old key."""
    return cache_key("prediction", ("json3",) + token), str(token[2])  # json3: data gained "volatility"


def _lookup(token: tuple, endpoint: str):
    """(cache slot, cached entry or None) for a ``service.cache_token``; call it with caching on."""
    slot = _slot(token)
    entry = cache_get(slot[0], near=True)
    labelled(CACHE_LOOKUPS, endpoint, "miss" if entry is None else "hit").inc()
    return slot, entry


def _store(slot, entry: tuple, timeframe: str) -> None:
    if slot is not None and str(entry[_VERSION]) == slot[1]:
        cache_set(slot[0], entry, timeframe, near=True)


BODY_ERRORS = {400: "Body is not a JSON object (malformed_request), or unknown timeframe (lists the valid ones)",
               422: "A field has the wrong type, is missing, too long or out of range (validation_error)"}


@bp.post("/predict")
@operation(summary="Predict one symbol's price at the end of a timeframe", tags=("predict",),
           description="Served by the requested version, else by the client's A/B assignment (X-Client-Id "
                       "header, else the peer address); the served version is always in data.model_version. "
                       "Answers are cached until the next candle or model switch (metadata.cache_hit). "
                       + EXPLAIN_DOC,
           body=PredictRequest, response=Prediction, example={"symbol": "bitcoin", "timeframe": "24h"},
           headers=(("X-Client-Id", "Stable id of the app install, for A/B assignment"),),
           errors={**BODY_ERRORS, 404: "Unknown symbol (lists the supported ones) or model version"})
def predict(body: PredictRequest):
    return _answer(body.symbol, body.timeframe, body.model_version, time.perf_counter(), body.explain)


@bp.get("/predict")
@operation(summary="Predict one symbol (GET, with ETag: poll it with If-None-Match)", tags=("predict",),
           description="The same answer as POST /predict, for clients that poll: it carries an ETag (which "
                       "changes with the next candle or a model switch) and Cache-Control: private, max-age=<seconds "
                       "until the next candle closes>. A request whose If-None-Match holds the current ETag gets 304 "
                       "with no body, without the prediction being made again. " + EXPLAIN_DOC,
           query=PredictQuery, response=Prediction, conditional=True,
           headers=(("X-Client-Id", "Stable id of the app install, for A/B assignment"), *CONDITIONAL_HEADERS),
           errors={400: "Unknown timeframe (lists the valid ones)", 404: "Unknown symbol or model version",
                   422: "A parameter is missing, too long or of the wrong type"})
def predict_get(query: PredictQuery):
    started = time.perf_counter()
    service = get_service()
    token = service.cache_token(query.symbol, query.timeframe, query.model_version, client_id())
    newest = None if token[3] is None else pd.Timestamp(token[3])
    note(symbol=token[0], timeframe=token[1], version=token[2])
    tag = etag("prediction", *token, *(("explain",) if query.explain else ()))
    return conditional(tag, next_candle_max_age(newest, service.now()), private=True,
                       build=lambda: _answer(query.symbol, query.timeframe, query.model_version, started, query.explain))


def _answer(symbol, timeframe, model_version, started: float, explain: bool = False):
    note(symbol=symbol, timeframe=timeframe)
    service = get_service()  # its calls run the (cheap) model refresh check themselves
    cid = client_id()
    slot, entry = None, None
    if cache_enabled():
        slot, entry = _lookup(service.cache_token(symbol, timeframe, model_version, cid), "predict")
    hit = entry is not None
    if not hit:
        entry = _cached(service.predict(symbol, timeframe, model_version=model_version, client_id=cid))
        _store(slot, entry, timeframe)
    _served(entry[_VERSION], entry[_TIMEFRAME], hit)
    note(symbol=entry[_SYMBOL], version=entry[_VERSION], cache_hit=hit)
    metadata = (f'{{"processing_time":{_number(round(time.perf_counter() - started, 6))},'
                f'"cache_hit":{"true" if hit else "false"},"model_accuracy":{_number(entry[_ACCURACY])}}}')
    data = entry[_JSON]
    if explain:  # the served version's explanation, spliced into the cached data object
        found = service.explain(symbol, timeframe, model_version=entry[_VERSION], client_id=cid)
        data = b"".join((data[:-1], b',"explanation":', _to_json(found), b"}"))
    # What jsonify({"status", "data", "metadata"}) would send, with "data" encoded once per cache entry.
    body = b"".join((b'{"status":"success","data":', data, b',"metadata":', metadata.encode(), b"}\n"))
    return current_app.response_class(body, mimetype="application/json")


def _number(value) -> str:
    """A number or None as the standard JSON encoder writes it (repr, for the common finite float)."""
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return json.dumps(value)


@bp.post("/predict/batch")
@operation(summary="Predict several symbols in one call", tags=("predict",),
           description="One entry per requested symbol, in order; a symbol that fails is reported in its own "
                       "entry (status error) and the call still answers 200. " + EXPLAIN_DOC,
           body=BatchRequest, response=Batch, example={"symbols": ["bitcoin", "ETH"], "timeframe": "7d"},
           errors={**BODY_ERRORS, 404: "Unknown model version", 413: "More than 50 symbols, or body larger than 64 KiB"})
def predict_batch(body: BatchRequest):
    started = time.perf_counter()
    note(symbol=",".join(body.symbols)[:200], timeframe=body.timeframe)
    service = get_service()  # its calls run the (cheap) model refresh check themselves
    cid = client_id()
    version = service.resolve_version(body.model_version, cid)  # unknown version: 404 for the whole batch
    entries, slots, misses = [None] * len(body.symbols), [None] * len(body.symbols), []
    tokens = [None] * len(body.symbols)
    found = {}
    if cache_enabled():  # one routing, one newest-candle read and one cache round trip for the whole batch
        tokens = service.cache_tokens(body.symbols, body.timeframe, body.model_version, cid)
        asked = [i for i, t in enumerate(tokens) if isinstance(t, tuple)]  # else an error reported below
        for i in asked:
            slots[i] = _slot(tokens[i])
        found = dict(zip(asked, cache_get_many([slots[i][0] for i in asked], near=True)))
        for i in asked:
            labelled(CACHE_LOOKUPS, "batch", "miss" if found[i] is None else "hit").inc()
    for i, symbol in enumerate(body.symbols):
        cached = found.get(i)
        if cached is None:
            misses.append(i)
        else:
            _served(cached[_VERSION], cached[_TIMEFRAME], True)
            entries[i] = {"symbol": symbol, "status": "success", "data": current_app.json.loads(cached[_JSON]),
                          "cache_hit": True}
    if misses:
        fresh = service.predict_batch([body.symbols[i] for i in misses], body.timeframe,
                                      model_version=body.model_version, client_id=cid)
        for i, entry in zip(misses, fresh):
            entry = dict(entry, cache_hit=False)
            if entry.get("status") == "success":
                data = entry["data"]
                if slots[i] is not None:
                    _store(slots[i], _cached(data), body.timeframe)
                _served(data.get("model_version"), data.get("timeframe"), False)
            entries[i] = entry
    if body.explain:
        _explain_entries(service, entries, body.timeframe, cid)
    ok = sum(1 for e in entries if e.get("status") == "success")
    hits = sum(1 for e in entries if e.get("cache_hit"))
    note(version=version, cache_hit=hits == len(entries))
    return jsonify({
        "status": "success",
        "data": entries,
        "metadata": {"processing_time": round(time.perf_counter() - started, 6), "count": len(entries),
                     "succeeded": ok, "failed": len(entries) - ok, "cache_hits": hits, "model_version": version},
    })


def _explain_entries(service, entries: list, timeframe: str, cid) -> None:
    for entry in entries:
        if entry.get("status") != "success":
            continue
        data = entry["data"] = dict(entry["data"])
        try:
            data["explanation"] = service.explain(data["symbol"], timeframe, model_version=data["model_version"],
                                                  client_id=cid)
        except CryptoPredictorError as exc:  # the prediction stands; only its explanation is missing
            data["explanation"] = None
            entry["explanation_error"] = {"code": exc.code, "message": exc.message}
