"""One JSON error shape for every 4xx and 5xx: {"status": "error", "error": {"code", "message"}}.

Domain errors may add ``error.details`` (for example ``supported`` symbols, ``valid``
timeframes, ``retry_after`` seconds) so the app can act on them without parsing
messages; ``code`` and ``message`` are always there. No response carries a traceback.
"""

from __future__ import annotations

import logging
import math

from flask import current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

from crypto_predictor.errors import CryptoPredictorError, InvalidInput

log = logging.getLogger("crypto_predictor.api")


class MalformedRequest(InvalidInput):
    """The body is not JSON, or not a JSON object."""

    code = "malformed_request"


class ValidationFailed(InvalidInput):
    """Well-formed JSON whose fields have the wrong type or range."""

    http_status = 422
    code = "validation_error"


class TooManySymbols(InvalidInput):
    http_status = 413
    code = "too_many_symbols"


# Werkzeug names are fine codes ("Not Found" -> not_found) except these.
_HTTP_CODES = {413: "payload_too_large", 429: "rate_limited"}


def _plain(value, depth=0):
    """Details made JSON-safe: plain scalars, lists and dicts, anything else as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth < 3 and isinstance(value, (list, tuple, set)):
        return [_plain(v, depth + 1) for v in value]
    if depth < 3 and isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    return str(value)


def error_response(status: int, code: str, message: str, headers=None, details=None):
    error = {"code": code, "message": message}
    if details:
        error["details"] = _plain(details)
    response = jsonify({"status": "error", "error": error})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = str(value)
    return response


def _retry_after(seconds) -> dict:
    try:
        return {"Retry-After": max(1, math.ceil(float(seconds)))}
    except (TypeError, ValueError, OverflowError):
        return {}


def register_error_handlers(app):
    @app.errorhandler(CryptoPredictorError)
    def domain_error(exc: CryptoPredictorError):
        headers = _retry_after(exc.details["retry_after"]) if "retry_after" in exc.details else {}
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        if status == 500:  # a fault on our side: its message may name files; keep it in the log
            log.error("domain error %s: %s", exc.code, exc.message)
            return error_response(500, exc.code, "internal server error")
        if status > 500:
            log.warning("domain error %s: %s", exc.code, exc.message)
        return error_response(status, exc.code, exc.message, headers, exc.details)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if isinstance(exc, RoutingException) or exc.code is None or exc.code < 400:
            return exc  # redirects and the like are not errors
        code = _HTTP_CODES.get(exc.code) or (exc.name or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # e.g. Allow on 405
        if exc.code == 429 and "Retry-After" not in headers:  # the limiter sets it; a safe default
            headers["Retry-After"] = 60
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"request body larger than {current_app.config.get('MAX_CONTENT_LENGTH')} bytes"
        elif exc.code == 429:
            message = f"rate limit exceeded ({exc.description}); retry after the Retry-After seconds"
        return error_response(exc.code, code, message, headers)

    @app.errorhandler(SQLAlchemyError)
    def store_error(exc: SQLAlchemyError):
        log.error("store error: %s", exc.__class__.__name__, exc_info=exc)
        return error_response(503, "store_unavailable", "the data store is unavailable; try again later",
                              {"Retry-After": 5})

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.error("unhandled error: %s", exc.__class__.__name__, exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
