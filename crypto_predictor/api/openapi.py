"""The OpenAPI 3 document of the API (written by hand) at /api/v1/openapi.json, and /api/v1/docs.

The docs page is plain server-rendered HTML built from the same document: no CDN, no
JavaScript, so it works on an offline machine. tests/api/test_openapi.py checks that
every registered /api/v1 route and method is documented here.
"""

from __future__ import annotations

import functools
import html
import json

from flask import Blueprint, Response, jsonify

from crypto_predictor.api import schemas
from crypto_predictor.symbols import INTERVALS_MS, TIMEFRAMES, supported_ids

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": "number", "nullable": True}
_STR = {"type": "string"}

bp = Blueprint("docs", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(schema: dict, description: str = "Success") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _envelope(data: dict, metadata: dict | None = None) -> dict:
    props = {"status": {"type": "string", "enum": ["success"]}, "data": data}
    if metadata is not None:
        props["metadata"] = metadata
    return {"type": "object", "required": ["status", "data"], "properties": props}


def _path_param(name: str, description: str, example: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "maxLength": schemas.MAX_NAME_LENGTH}, "example": example}


def _query_int(name, description, default, bounds) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": bounds[0], "maximum": bounds[1], "default": default}}


COMMON_ERRORS = {
    "413": _error("Body larger than 64 KiB"),
    "429": _error("Rate limit exceeded; see the Retry-After header"),
    "500": _error("Unexpected server error (no traceback is returned)"),
    "503": _error("No model can be loaded, the store is unreachable, or market data is too old "
                  "(Retry-After header, error.details.retry_after)"),
}
BODY_ERRORS = {
    "400": _error("Body is not a JSON object (malformed_request), or unknown timeframe (lists the valid ones)"),
    "422": _error("A field has the wrong type, is missing, too long or out of range (validation_error)"),
}

PREDICTION_DATA = {
    "type": "object",
    "required": ["symbol", "current_price", "predicted_price", "confidence", "change_percentage", "timeframe",
                 "prediction_time", "model_version", "target_time", "direction", "interval"],
    "properties": {
        "symbol": _STR, "current_price": _NUM, "predicted_price": _NUM,
        "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                       "description": "Calibrated probability that the predicted direction is right"},
        "change_percentage": _NUM, "timeframe": {"type": "string", "enum": list(TIMEFRAMES)},
        "prediction_time": {"type": "string", "format": "date-time"},
        "model_version": {"type": "string", "description": "The version that served this prediction"},
        "target_time": {"type": "string", "format": "date-time"},
        "direction": {"type": "string", "enum": ["up", "down", "flat"]},
        "interval": {"type": "object", "description": "Conformal price intervals: level -> [low, high]",
                     "additionalProperties": {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2,
                                              "nullable": True}},
        "data_as_of": {"type": "string", "format": "date-time", "description": "Close time of the newest candle used"},
        "stale": {"type": "boolean", "description": "True when the live source could not be reached and "
                                                    "stored candles older than one bar were used"},
        "model_accuracy": {"type": "number", "nullable": True, "minimum": 0, "maximum": 1,
                           "description": "Walk-forward directional accuracy of the serving model for this "
                                          "symbol and timeframe"},
    },
}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["status", "error"],
        "properties": {
            "status": {"type": "string", "enum": ["error"]},
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "example": "unknown_symbol"}, "message": _STR,
                "details": {"type": "object", "description": "Machine-readable extras, e.g. supported, valid, "
                                                             "retry_after, available"}}},
        },
    },
    "PredictRequest": {
        "type": "object", "required": ["symbol"], "additionalProperties": True,
        "description": "Unknown fields are ignored.",
        "properties": {
            "symbol": {"type": "string", "maxLength": schemas.MAX_NAME_LENGTH, "example": "bitcoin",
                       "description": "CoinGecko id, ticker (BTC) or Binance pair (BTCUSDT)"},
            "timeframe": {"type": "string", "enum": list(TIMEFRAMES), "default": schemas.DEFAULT_TIMEFRAME},
            "model_version": {"type": "string", "nullable": True, "example": "production",
                              "description": "Version id (v3) or alias (production, challenger); "
                                             "default: the client's A/B assignment"},
        },
    },
    "BatchRequest": {
        "type": "object", "required": ["symbols"], "additionalProperties": True,
        "properties": {
            "symbols": {"type": "array", "minItems": 1, "maxItems": schemas.MAX_BATCH_SYMBOLS,
                        "items": {"type": "string", "maxLength": schemas.MAX_NAME_LENGTH},
                        "description": f"At most {schemas.MAX_BATCH_SYMBOLS} (more: 413)"},
            "timeframe": {"type": "string", "enum": list(TIMEFRAMES), "default": schemas.DEFAULT_TIMEFRAME},
            "model_version": {"type": "string", "nullable": True},
        },
    },
    "PredictionData": PREDICTION_DATA,
    "Prediction": _envelope(_ref("PredictionData"), {"type": "object", "properties": {
        "processing_time": {"type": "number", "description": "Seconds"},
        "cache_hit": {"type": "boolean"}, "model_accuracy": _NUM_OR_NULL}}),
    "BatchEntry": {
        "type": "object", "required": ["symbol", "status"],
        "properties": {"symbol": _STR, "status": {"type": "string", "enum": ["success", "error"]},
                       "cache_hit": {"type": "boolean"}, "data": _ref("PredictionData"),
                       "error": {"type": "object", "properties": {"code": _STR, "message": _STR}}},
    },
    "Batch": _envelope({"type": "array", "items": _ref("BatchEntry")}, {"type": "object", "properties": {
        "processing_time": _NUM, "count": {"type": "integer"}, "succeeded": {"type": "integer"},
        "failed": {"type": "integer"}, "cache_hits": {"type": "integer"}, "model_version": _STR}}),
    "Analysis": _envelope({
        "type": "object",
        "properties": {
            "symbol": _STR, "interval": {"type": "string", "enum": list(INTERVALS_MS)}, "days": {"type": "integer"},
            "data_as_of": {"type": "string", "format": "date-time"},
            "window": {"type": "object", "nullable": True, "properties": {"start": _STR, "end": _STR}},
            "ohlcv": {"type": "array", "items": {"type": "object", "properties": {
                "time": _STR, "open": _NUM, "high": _NUM, "low": _NUM, "close": _NUM, "volume": _NUM}}},
            "indicators": {"type": "object", "description": "Series aligned with ohlcv (null where undefined): "
                           "sma_20, sma_50, ema_12, ema_26, rsi_14, macd, macd_signal, macd_hist, "
                           "bb_upper, bb_middle, bb_lower",
                           "additionalProperties": {"type": "array", "items": _NUM_OR_NULL}},
            "summary": {"type": "object", "properties": {
                "bars": {"type": "integer"}, "start_price": _NUM_OR_NULL, "end_price": _NUM_OR_NULL,
                "return_pct": _NUM_OR_NULL, "volatility_annualized_pct": _NUM_OR_NULL,
                "max_drawdown_pct": _NUM_OR_NULL, "high": _NUM_OR_NULL, "low": _NUM_OR_NULL,
                "volume_trend": {"type": "object", "nullable": True}}},
            "signal": {"type": "object", "properties": {
                "signal": {"type": "string", "enum": ["BUY", "SELL", "HOLD"]}, "score": {"type": "integer"},
                "threshold": {"type": "integer"},
                "votes": {"type": "array", "items": {"type": "object", "properties": {
                    "indicator": _STR, "value": _NUM_OR_NULL, "vote": {"type": "integer", "enum": [-1, 0, 1]},
                    "reason": _STR}}}}},
        },
    }, {"type": "object", "properties": {"processing_time": _NUM, "cache_hit": {"type": "boolean"}}}),
    "Generic": _envelope({"description": "See the endpoint description"}, {"type": "object"}),
    "Health": {"type": "object", "required": ["status", "checks"], "properties": {
        "status": {"type": "string", "enum": ["ok", "error"]}, "model_version": {"type": "string", "nullable": True},
        "checks": {"type": "object"}, "error": {"type": "object"}}},
}

SYMBOL = _path_param("symbol", f"Asset: id, ticker or pair; supported ids: {', '.join(supported_ids())}", "bitcoin")


def _get(summary, description, responses, parameters=(), tags=("info",)) -> dict:
    op = {"summary": summary, "description": description, "tags": list(tags), "responses": responses}
    if parameters:
        op["parameters"] = list(parameters)
    return {"get": op}


PATHS = {
    "/api/v1/predict": {"post": {
        "summary": "Predict one symbol's price at the end of a timeframe",
        "description": "Served by the requested version, else by the client's A/B assignment (X-Client-Id "
                       "header, else the peer address); the served version is always in data.model_version. "
                       "Answers are cached until the next candle or model switch (metadata.cache_hit).",
        "tags": ["predict"],
        "parameters": [{"name": "X-Client-Id", "in": "header", "required": False, "schema": _STR,
                        "description": "Stable id of the app install, for A/B assignment"}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("PredictRequest"), "example": {"symbol": "bitcoin", "timeframe": "24h"}}}},
        "responses": {"200": _ok(_ref("Prediction")), **BODY_ERRORS,
                      "404": _error("Unknown symbol (lists the supported ones) or model version"),
                      **COMMON_ERRORS},
    }},
    "/api/v1/predict/batch": {"post": {
        "summary": "Predict several symbols in one call",
        "description": "One entry per requested symbol, in order; a symbol that fails is reported in its own "
                       "entry (status error) and the call still answers 200.",
        "tags": ["predict"],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("BatchRequest"), "example": {"symbols": ["bitcoin", "ETH"], "timeframe": "7d"}}}},
        "responses": {"200": _ok(_ref("Batch")), **BODY_ERRORS, "404": _error("Unknown model version"),
                      **COMMON_ERRORS, "413": _error("More than 50 symbols, or body larger than 64 KiB")},
    }},
    "/api/v1/analysis/{symbol}": _get(
        "Historical analysis: OHLCV, indicators, summary and a technical signal",
        "`days` counts back from the newest stored candle, not from today (the shared data set ends "
        "on 2021-09-30). Hourly candles are resampled to 4h or 1d bars (UTC-aligned, complete bars only). "
        "The BUY/SELL/HOLD signal is a net vote of RSI, MACD, SMA trend, EMA cross and Bollinger bands "
        "on the last bar; it describes the chart and is not a forecast.",
        {"200": _ok(_ref("Analysis")), "400": _error("Unknown interval (lists the valid ones)"),
         "404": _error("Unknown symbol, or no candles stored for it"),
         "422": _error("days is not an integer from 1 to 365"), **COMMON_ERRORS},
        [SYMBOL, _query_int("days", "Days of history, counted back from the newest candle",
                            schemas.DEFAULT_ANALYSIS_DAYS, schemas.ANALYSIS_DAYS),
         {"name": "interval", "in": "query", "required": False, "description": "Bar length",
          "schema": {"type": "string", "enum": list(INTERVALS_MS), "default": schemas.DEFAULT_INTERVAL}}],
        tags=("analysis",)),
    "/api/v1/models": _get("Model versions with creation time, aliases and headline metrics", "",
                           {"200": _ok(_ref("Generic")), **COMMON_ERRORS}, tags=("models",)),
    "/api/v1/models/performance/{model_version}": _get(
        "Walk-forward metrics (vs the naive forecast) and live accuracy of one version", "",
        {"200": _ok(_ref("Generic")), "404": _error("Unknown model version (lists the available ones)"),
         **COMMON_ERRORS},
        [_path_param("model_version", "Version id or alias", "production")], tags=("models",)),
    "/api/v1/symbols": _get("Supported symbols, timeframes and analysis intervals", "",
                            {"200": _ok(_ref("Generic")), **COMMON_ERRORS}),
    "/api/v1/predictions/{symbol}/history": _get(
        "Logged predictions of one symbol, newest first, with realised outcomes where known", "",
        {"200": _ok(_ref("Generic")), "404": _error("Unknown symbol"),
         "422": _error("limit is not an integer from 1 to 500"), **COMMON_ERRORS},
        [SYMBOL, _query_int("limit", "Most rows to return", schemas.DEFAULT_HISTORY_LIMIT, schemas.HISTORY_LIMIT)]),
    "/api/v1/openapi.json": _get("This document", "", {"200": {"description": "OpenAPI 3 document"}},
                                 tags=("docs",)),
    "/api/v1/docs": _get("Human-readable API documentation", "",
                         {"200": {"description": "HTML page", "content": {"text/html": {"schema": _STR}}}},
                         tags=("docs",)),
    "/api/health": _get("Readiness: loaded model version, data freshness and checks",
                        "200 when a model is loaded and the store answers; 503 otherwise (same body, status "
                        "error, with the error object).",
                        {"200": _ok(_ref("Health")), "503": _ok(_ref("Health"), "Not ready")}, tags=("ops",)),
    "/metrics": {"get": {
        "summary": "Prometheus metrics (summed over Gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set)",
        "description": "Open unless METRICS_TOKEN is set; then it needs Authorization: Bearer <METRICS_TOKEN>.",
        "tags": ["ops"], "security": [{}, {"metricsToken": []}],
        "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": _STR}}},
                      "401": _error("METRICS_TOKEN is set and the bearer token is missing or wrong")}}},
}

ADMIN_ERRORS = {
    "401": _error("Missing or wrong bearer token (WWW-Authenticate: Bearer)"),
    "403": _error("Admin endpoints are disabled: ADMIN_TOKEN is not set (admin_disabled)"),
    "413": _error("A body declared larger than 64 KiB (admin routes take no body)"),
    "429": COMMON_ERRORS["429"], "500": COMMON_ERRORS["500"],
}


def _admin(method, summary, description, extra=None) -> dict:
    responses = {"200": _ok(_ref("Generic")), **ADMIN_ERRORS, **(extra or {})}
    return {method: {"summary": summary, "description": description + " The answer names the worker_pid "
                     "that handled it: each Gunicorn worker and instance acts on its own state.",
                     "tags": ["admin"], "security": [{"adminToken": []}], "responses": responses}}


PATHS.update({
    "/api/v1/admin/models/reload": _admin(
        "post", "Re-read the model aliases now",
        "Loads what production and challenger point at in the answering worker (other workers notice "
        "within MODEL_POLL_SECONDS). data: swapped, production, challenger, loaded, refused.",
        {"503": COMMON_ERRORS["503"]}),
    "/api/v1/admin/cache/clear": _admin(
        "post", "Clear the response cache",
        "With Redis (CACHE_REDIS_URL) the shared cache of every worker and instance; otherwise only the "
        "answering worker's in-process cache. data: cleared, backend, scope.",
        {"503": _error("The cache backend could not be reached (cache_unavailable)")}),
    "/api/v1/admin/request-info": _admin(
        "get", "The client address as the app sees it",
        "remote_addr after PROXY_FIX_X_FOR is applied, the peer address and the raw X-Forwarded-For: how to "
        "check the proxy setting after a deploy."),
})

SECURITY_SCHEMES = {
    "adminToken": {"type": "http", "scheme": "bearer", "description": "ADMIN_TOKEN from the environment"},
    "metricsToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN from the environment"},
}


def spec() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "crypto-predictor API",
            "version": "1.0.0",
            "description": "Price predictions with confidence intervals, historical analysis and model "
                           "performance. Every error is JSON: {\"status\": \"error\", \"error\": {\"code\", "
                           "\"message\"}}. Request bodies are JSON objects (any Content-Type) of at most 64 KiB; "
                           "unknown fields are ignored. Responses carry X-Request-Id (echoed when sent).",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": n} for n in ("predict", "analysis", "models", "info", "docs", "ops", "admin")],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(spec())


def _render_schema(schema) -> str:
    return f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>"


def render_docs(doc: dict) -> str:
    esc = html.escape
    parts = [f"<h1>{esc(doc['info']['title'])} {esc(doc['info']['version'])}</h1>",
             f"<p>{esc(doc['info']['description'])}</p>",
             '<p>Machine-readable: <a href="openapi.json">openapi.json</a></p>']
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            parts.append(f'<h2 id="{esc(method + path)}"><code>{esc(method.upper())} {esc(path)}</code></h2>')
            parts.append(f"<p><strong>{esc(op['summary'])}</strong></p>")
            if op.get("description"):
                parts.append(f"<p>{esc(op['description'])}</p>")
            schemes = [name for requirement in op.get("security", []) for name in requirement]
            if schemes:
                optional = " (optional)" if {} in op["security"] else ""
                parts.append(f"<p>Authorization: Bearer {esc(', '.join(schemes))}{optional}</p>")
            if op.get("parameters"):
                rows = "".join(f"<li><code>{esc(p['name'])}</code> ({esc(p['in'])}"
                               f"{', required' if p.get('required') else ''}): {esc(p.get('description', ''))}</li>"
                               for p in op["parameters"])
                parts.append(f"<h3>Parameters</h3><ul>{rows}</ul>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                parts.append("<h3>Request body</h3>" + _render_schema(body.get("example") or body["schema"]))
            rows = "".join(f"<li><code>{esc(code)}</code> {esc(r['description'])}</li>"
                           for code, r in op["responses"].items())
            parts.append(f"<h3>Responses</h3><ul>{rows}</ul>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f"<h3 id=\"{esc(name)}\">{esc(name)}</h3>" + _render_schema(schema))
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>crypto-predictor API</title>"
            "<style>body{font-family:sans-serif;max-width:60rem;margin:auto;padding:1rem}"
            "pre{background:#f4f4f4;padding:.5rem;overflow:auto}h2{border-top:1px solid #ccc;padding-top:1rem}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")


@functools.cache
def _docs_html() -> str:
    return render_docs(spec())  # the document is fixed at import: render it once per process


@bp.get("/docs")
def docs():
    return Response(_docs_html(), mimetype="text/html")
