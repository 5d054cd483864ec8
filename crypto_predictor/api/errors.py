"""One JSON error shape for every 4xx and 5xx: {"status": "error", "error": {"code", "message"}}."""

from __future__ import annotations

from flask import jsonify
from werkzeug.exceptions import HTTPException

from crypto_predictor.errors import CryptoPredictorError


def error_response(status: int, code: str, message: str, headers=None):
    response = jsonify({"status": "error", "error": {"code": code, "message": message}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app):
    @app.errorhandler(CryptoPredictorError)
    def domain_error(exc: CryptoPredictorError):
        return error_response(exc.http_status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
