"""GET endpoints of /api/v1: analysis, models, model performance, symbols, prediction history."""

from __future__ import annotations

import time

import pandas as pd
from flask import Blueprint, current_app, jsonify, request

from crypto_predictor.api import schemas
from crypto_predictor.api.observability import CACHE_LOOKUPS, labelled, note
from crypto_predictor.api.runtime import cache_enabled, cache_get, cache_key, cache_set, get_service
from crypto_predictor.errors import DataNotFound
from crypto_predictor.serving.analysis import analyse, history_hours
from crypto_predictor.symbols import ASSETS, INTERVALS_MS, TIMEFRAMES, resolve

bp = Blueprint("info", __name__)


def _ok(data, started: float, **metadata):
    metadata["processing_time"] = round(time.perf_counter() - started, 6)
    return jsonify({"status": "success", "data": data, "metadata": metadata})


@bp.get("/analysis/<symbol>")
def analysis(symbol: str):
    """Chart data for the newest ``days`` days in the store (the store may end in the past)."""
    started = time.perf_counter()
    days, interval = schemas.parse_analysis_args(request.args)
    asset = resolve(schemas.path_name(symbol)).id
    note(symbol=asset)
    store = current_app.extensions["candle_store"]
    newest = store.latest_time(asset, "1h")
    if newest is None:
        raise DataNotFound(f"no candles stored for {asset}; run ingest first", asset=asset)
    key = cache_key("analysis", (asset, interval, days, newest.isoformat()))
    data = cache_get(key)
    hit = data is not None
    if cache_enabled():
        labelled(CACHE_LOOKUPS, "analysis", "hit" if hit else "miss").inc()
    if not hit:
        start = newest - pd.Timedelta(hours=history_hours(interval, days) - 1)
        result = analyse(store.load(asset, "1h", start), interval, days)
        data = {"symbol": asset, "data_as_of": (newest + pd.Timedelta(hours=1)).isoformat(), **result}
        cache_set(key, data, "1h")
    note(cache_hit=hit)
    return _ok(data, started, cache_hit=hit)


@bp.get("/models")
def models():
    started = time.perf_counter()
    return _ok(get_service().versions(), started)


@bp.get("/models/performance/<model_version>")
def model_performance(model_version: str):
    started = time.perf_counter()
    data = get_service().performance(schemas.path_name(model_version, "model_version"))
    note(version=data.get("version") if isinstance(data, dict) else None)
    return _ok(data, started)


@bp.get("/symbols")
def symbols():
    """Every supported asset, and which of them the production model serves (and at which timeframes)."""
    started = time.perf_counter()
    production, manifest = get_service().served_manifest("production")  # no listing of every bundle on disk
    served = set(manifest.get("assets") or [])
    listed = [{"id": a.id, "ticker": a.ticker, "name": a.name, "pair": a.pair, "served": a.id in served}
              for a in ASSETS]
    return _ok({"symbols": listed, "timeframes": list(TIMEFRAMES),
                "served_timeframes": manifest.get("timeframes") or [],
                "intervals": list(INTERVALS_MS), "model_version": production}, started)


@bp.get("/predictions/<symbol>/history")
def prediction_history(symbol: str):
    started = time.perf_counter()
    limit = schemas.parse_history_args(request.args)
    asset = resolve(schemas.path_name(symbol)).id
    note(symbol=asset)
    rows = get_service().history(asset, limit=limit)
    return _ok(rows, started, count=len(rows), limit=limit)
