"""Admin endpoints at /api/v1/admin, for operators: each needs ``Authorization: Bearer <ADMIN_TOKEN>``.

With no ADMIN_TOKEN configured every admin route answers 403 ``admin_disabled``: there is no
default secret to guess. A missing or wrong token is a 401 with ``WWW-Authenticate: Bearer``.
Tokens are compared in constant time (``auth.bearer_matches``).

What they act on is the answering process: Gunicorn runs several workers (and a platform
several instances), and a request reaches one of them. ``models/reload`` makes that worker
re-read the aliases now; the others notice within MODEL_POLL_SECONDS anyway. ``cache/clear``
empties the shared Redis cache (every worker and instance), or only that worker's in-process
cache. No route here reads a request body; one declared larger than MAX_CONTENT_LENGTH is refused (413).
"""

from __future__ import annotations

import logging
import os

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from crypto_predictor.api.auth import bearer_matches, presented_bearer, unauthorized
from crypto_predictor.api.errors import error_response
from crypto_predictor.api.extensions import cache
from crypto_predictor.api.operations import operation
from crypto_predictor.api.runtime import cache_clear_near, get_service
from crypto_predictor.api.schemas import Generic

bp = Blueprint("admin", __name__)
log = logging.getLogger("crypto_predictor.api")


@bp.before_request
def require_admin_token():
    expected = current_app.config.get("ADMIN_TOKEN") or ""
    if not expected:
        return error_response(403, "admin_disabled", "admin endpoints are disabled: ADMIN_TOKEN is not set")
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()  # no route here reads a body, so the app-wide cap would never trigger
    if not bearer_matches(presented_bearer(), expected):
        log.warning("admin request refused: %s %s", request.method, request.path)
        return unauthorized("admin")
    return None


@bp.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"  # answers describe this moment and this worker
    return response


ADMIN_ERRORS = {401: "Missing or wrong bearer token (WWW-Authenticate: Bearer)",
                403: "Admin endpoints are disabled: ADMIN_TOKEN is not set (admin_disabled)",
                413: "A body declared larger than 64 KiB (admin routes take no body)"}
WORKER_NOTE = (" The answer names the worker_pid that handled it: each Gunicorn worker and instance acts on its "
               "own state.")


def _admin(summary: str, description: str, errors=None):
    return operation(summary=summary, description=description + WORKER_NOTE, tags=("admin",), response=Generic,
                     security=({"adminToken": []},), errors={**ADMIN_ERRORS, **(errors or {})},
                     common_errors=(429, 500))


def _ok(data: dict):
    return jsonify({"status": "success", "data": {**data, "worker_pid": os.getpid()}})


@bp.post("/models/reload")
@_admin("Re-read the model aliases now",
        "Loads what production and challenger point at in the answering worker (other workers notice within "
        "MODEL_POLL_SECONDS). data: swapped, production, challenger, loaded, refused.",
        {503: "The bundle could not be loaded or the store is unreachable"})
def reload_models():
    service = get_service()
    swapped = service.refresh_models(force=True)
    model = service.health().get("checks", {}).get("model", {})
    log.info("admin: models reloaded (swapped=%s)", swapped)
    return _ok({"swapped": bool(swapped), "production": model.get("version"),
                "challenger": model.get("challenger"), "loaded": model.get("loaded", []),
                "refused": model.get("refused")})


@bp.post("/cache/clear")
@_admin("Clear the response cache",
        "With Redis (CACHE_REDIS_URL) the shared cache of every worker and instance (their near copies of predictions "
        "expire within NEAR_CACHE_SECONDS); otherwise only the answering "
        "worker's in-process cache. data: cleared, backend, scope, near_cache_seconds.",
        {503: "The cache backend could not be reached (cache_unavailable)"})
def clear_cache():
    backend = type(cache.cache).__name__
    try:
        cache_clear_near()  # this worker's copy; the others' expire within NEAR_CACHE_SECONDS
        cleared = bool(cache.clear())
    except Exception as exc:  # Redis down: say so rather than pretend
        log.warning("admin: cache clear failed: %s", exc.__class__.__name__)
        return error_response(503, "cache_unavailable", f"the cache backend ({backend}) could not be cleared",
                              {"Retry-After": 5})
    scope = "every worker and instance" if backend == "RedisCache" else "this worker only"
    log.info("admin: cache cleared (%s, %s)", backend, scope)
    return _ok({"cleared": cleared, "backend": backend, "scope": scope,
                "near_cache_seconds": float(current_app.config.get("NEAR_CACHE_SECONDS", 0))})


@bp.get("/request-info")
@_admin("The client address as the app sees it",
        "remote_addr after PROXY_FIX_X_FOR is applied, the peer address and the raw X-Forwarded-For: how to check "
        "the proxy setting after a deploy.")
def request_info():
    """The client address as the app sees it: how to check PROXY_FIX_X_FOR after a deploy."""
    peer = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR", request.remote_addr)
    return _ok({"remote_addr": request.remote_addr, "peer_addr": peer,
                "x_forwarded_for": request.headers.get("X-Forwarded-For"),
                "proxy_fix_x_for": int(current_app.config.get("PROXY_FIX_X_FOR") or 0)})
