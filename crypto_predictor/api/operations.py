"""Each route's one declaration: the models it takes (body, query, path) and answers, and its errors.

``@operation(...)`` validates the request against those models before the view runs (the view
gets ``body=`` / ``query=`` models and its path values checked) and records the declaration on
the view, where api/openapi.py reads it to write the OpenAPI document. Validation failures
become the domain errors of api/errors.py, so every endpoint answers them in one shape.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from annotated_types import Ge, Le
from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from crypto_predictor.api.errors import MalformedRequest, TooManySymbols, ValidationFailed
from crypto_predictor.api.schemas import MAX_BATCH_SYMBOLS, MAX_NAME_LENGTH


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str = ""
    tags: tuple = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    response: type[BaseModel] | None = None  # the 200 answer (JSON)
    errors: dict = field(default_factory=dict)  # status -> description, answered in the Error shape
    common_errors: tuple = (413, 429, 500, 503)  # of api/openapi.py's COMMON_ERRORS, for routes that can meet them
    security: tuple = ()  # OpenAPI security requirements
    example: dict | None = None  # a request body example
    media_type: str | None = None  # a 200 answer that is not JSON (documents, pages, metrics)
    headers: tuple = ()  # (name, description) of optional request headers
    conditional: bool = False  # answers carry ETag and Cache-Control; a matching If-None-Match gets 304


def operation(**declaration):
    op = Operation(**declaration)

    def decorate(view):
        if op.body is None and op.query is None and op.path is None:
            view.__openapi__ = op
            return view

        @functools.wraps(view)
        def validated(**path_values):
            kwargs = {}
            if op.body is not None:
                kwargs["body"] = validated_body(op.body)
            if op.query is not None:
                kwargs["query"] = validate(op.query, request.args.to_dict())
            if op.path is not None:
                kwargs.update(validate(op.path, path_values).model_dump())
            return view(**kwargs)

        validated.__openapi__ = op
        return validated

    return decorate


# Validated bodies by (model, raw bytes): an app polls with the same few small bodies, and a frozen
# model built from the same bytes is the same value, so parsing and validating them again is waste.
MEMO_BODY_BYTES = 512
MEMO_ENTRIES = 1024
_memo: dict = {}


def validated_body(model: type[BaseModel]) -> BaseModel:
    """The request body validated as ``model``; small bodies of frozen models come from the memo.
    Bad bodies raise every time (only valid ones are kept)."""
    raw = _raw_body()
    if len(raw) > MEMO_BODY_BYTES or not model.model_config.get("frozen"):
        return validate(model, json_object(raw))
    key = (model, raw)
    found = _memo.get(key)
    if found is None:
        found = validate(model, json_object(raw))
        if len(_memo) >= MEMO_ENTRIES:
            _memo.clear()  # bounded; refilled by the bodies that are really in use
        _memo[key] = found
    return found


def _raw_body() -> bytes:
    """Bodies over MAX_CONTENT_LENGTH raise 413 while being read, chunked ones (no Content-Length) too."""
    if request.environ.get("CONTENT_LENGTH", "").isdigit():  # the usual case, without parsing headers
        return request.get_data(cache=True)
    return _chunked_body() if request.content_length is None else request.get_data(cache=True)


def json_object(raw: bytes) -> dict:
    """``raw`` as a dict, whatever the Content-Type (some clients send JSON as text/plain)."""
    if not raw.strip():
        raise MalformedRequest("request body must be a JSON object; it is empty")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # bad syntax or encoding, absurd nesting, giant integers
        raise MalformedRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedRequest(f"request body must be a JSON object, got a JSON {json_type(body)}")
    return body


def _chunked_body() -> bytes:
    """A body without Content-Length. Werkzeug cuts such a stream at MAX_CONTENT_LENGTH without a
    word (the JSON then looks malformed), so read one byte past the limit to tell "too large"."""
    stream = request.environ.get("wsgi.input")
    if stream is None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=True)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    raw = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(raw) > limit:
        raise RequestEntityTooLarge(f"request body larger than {limit} bytes")
    return raw


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def validate(model: type[BaseModel], data: dict) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _domain_error(model, exc.errors(include_url=False)) from None


def _domain_error(model, errors: list) -> Exception:
    """The first failing field (declaration order) as the error the API answers; too many symbols first."""
    for error in errors:
        if error["type"] == "too_long" and error["loc"] == ("symbols",):
            return TooManySymbols(f"at most {MAX_BATCH_SYMBOLS} symbols per batch, got {len(error['input'])}",
                                  limit=MAX_BATCH_SYMBOLS)
    error = errors[0]
    if error["type"] == "unknown_timeframe":
        return error["ctx"]["error"]  # UnknownTimeframe with its list of valid values
    name = error["loc"][0]
    where = name + "".join(f"[{part}]" for part in error["loc"][1:])
    return ValidationFailed(f"'{where}' {_describe(model, name, error)}", field=name)


def _describe(model, name: str, error: dict) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "is required: a list of symbol names" if name == "symbols" else "is required"
    if kind == "string_type":
        return f"must be a string, got a JSON {json_type(value)}"
    if kind == "list_type":
        return f"must be a list of strings, got a JSON {json_type(value)}"
    if kind == "string_too_long":
        return f"must be at most {MAX_NAME_LENGTH} characters"
    if kind in ("empty", "too_short"):
        return "must not be empty"
    low, high = _bounds(model, name)
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"must be from {low} to {high}, got {value}"
    if kind.startswith("int_"):
        return f"must be an integer from {low} to {high}"
    return error["msg"]


def _bounds(model, name: str) -> tuple:
    metadata = model.model_fields[name].metadata
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    return low, high
