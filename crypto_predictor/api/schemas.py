"""Request validation: bodies and query strings in, plain typed values out.

Rules (the same for every endpoint, and written into the OpenAPI document):
- a body that is not JSON, or JSON that is not an object -> 400 ``malformed_request``;
- a field of the wrong type, missing, too long or out of range -> 422 ``validation_error``;
- a well-typed value naming nothing we know (timeframe, interval) -> 400 listing the valid ones;
  an unknown symbol or model version is reported by the service (404);
- fields we do not know are ignored, so older and newer app builds can share one API.
The body is parsed whatever its Content-Type: some HTTP clients send JSON as text/plain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from crypto_predictor.api.errors import MalformedRequest, TooManySymbols, ValidationFailed
from crypto_predictor.symbols import check_interval, check_timeframe

MAX_BATCH_SYMBOLS = 50
MAX_NAME_LENGTH = 64  # longest symbol / version name we accept (the real ones are far shorter)
DEFAULT_TIMEFRAME = "24h"
ANALYSIS_DAYS = (1, 365)
DEFAULT_ANALYSIS_DAYS = 30
DEFAULT_INTERVAL = "1d"
HISTORY_LIMIT = (1, 500)
DEFAULT_HISTORY_LIMIT = 50


@dataclass(frozen=True)
class PredictRequest:
    symbol: str
    timeframe: str
    model_version: str | None


@dataclass(frozen=True)
class BatchRequest:
    symbols: tuple
    timeframe: str
    model_version: str | None


def json_object(request) -> dict:
    """The request body as a dict; bodies over MAX_CONTENT_LENGTH raise 413 while being read."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise MalformedRequest("request body must be a JSON object; it is empty")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # bad syntax or encoding, absurd nesting, giant integers
        raise MalformedRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedRequest(f"request body must be a JSON object, got a JSON {_json_type(body)}")
    return body


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _name(body: dict, field: str, required: bool) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationFailed(f"'{field}' is required", field=field)
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"'{field}' must be a string, got a JSON {_json_type(value)}", field=field)
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"'{field}' must be at most {MAX_NAME_LENGTH} characters", field=field)
    value = value.strip()
    if not value and required:
        raise ValidationFailed(f"'{field}' must not be empty", field=field)
    return value or None


def _timeframe(body: dict) -> str:
    value = _name(body, "timeframe", required=False)
    return check_timeframe(DEFAULT_TIMEFRAME if value is None else value.lower())


def parse_predict(body: dict) -> PredictRequest:
    return PredictRequest(_name(body, "symbol", required=True), _timeframe(body),
                          _name(body, "model_version", required=False))


def parse_batch(body: dict) -> BatchRequest:
    symbols = body.get("symbols")
    if symbols is None:
        raise ValidationFailed("'symbols' is required: a list of symbol names", field="symbols")
    if not isinstance(symbols, list):
        raise ValidationFailed(f"'symbols' must be a list of strings, got a JSON {_json_type(symbols)}",
                               field="symbols")
    if not symbols:
        raise ValidationFailed("'symbols' must not be empty", field="symbols")
    if len(symbols) > MAX_BATCH_SYMBOLS:
        raise TooManySymbols(f"at most {MAX_BATCH_SYMBOLS} symbols per batch, got {len(symbols)}",
                             limit=MAX_BATCH_SYMBOLS)
    for i, item in enumerate(symbols):
        if not isinstance(item, str):
            raise ValidationFailed(f"'symbols[{i}]' must be a string, got a JSON {_json_type(item)}",
                                   field="symbols")
        if len(item) > MAX_NAME_LENGTH:
            raise ValidationFailed(f"'symbols[{i}]' must be at most {MAX_NAME_LENGTH} characters",
                                   field="symbols")
    return BatchRequest(tuple(s.strip() for s in symbols), _timeframe(body),
                        _name(body, "model_version", required=False))


def _int_arg(args, name: str, default: int, bounds: tuple) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    lo, hi = bounds
    try:
        value = int(raw.strip()) if len(raw) <= 12 else None
    except ValueError:
        value = None
    if value is None:
        raise ValidationFailed(f"'{name}' must be an integer from {lo} to {hi}", field=name)
    if not lo <= value <= hi:
        raise ValidationFailed(f"'{name}' must be from {lo} to {hi}, got {value}", field=name)
    return value


def parse_analysis_args(args) -> tuple[int, str]:
    days = _int_arg(args, "days", DEFAULT_ANALYSIS_DAYS, ANALYSIS_DAYS)
    interval = args.get("interval") or DEFAULT_INTERVAL
    if len(interval) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"'interval' must be at most {MAX_NAME_LENGTH} characters", field="interval")
    return days, check_interval(interval.strip().lower())


def parse_history_args(args) -> int:
    return _int_arg(args, "limit", DEFAULT_HISTORY_LIMIT, HISTORY_LIMIT)


def path_name(value: str, what: str = "symbol") -> str:
    """A name taken from the URL path (symbol, model version), length-checked like body fields."""
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"'{what}' must be at most {MAX_NAME_LENGTH} characters", field=what)
    return value.strip()
