"""The Flask application factory: health at /api, the v1 blueprints (predict, info, docs) at /api/v1,
metrics at /metrics.

Admin routes sit at /api/v1/admin behind ADMIN_TOKEN (api/admin.py); CORS, the proxy-aware
client address and the /metrics token are switched by configuration (api/security.py).

``create_app`` builds the PredictionService but does not start it (no model is loaded
here): each process starts it on first use, after Gunicorn has forked (api/runtime.py).
"""

from __future__ import annotations

import pybreaker
from flask import Flask

from crypto_predictor.api import info, openapi, predict
from crypto_predictor.api.admin import bp as admin_bp
from crypto_predictor.api.dashboard import bp as dashboard_bp
from crypto_predictor.api.errors import register_error_handlers
from crypto_predictor.api.extensions import cache, remote_address
from crypto_predictor.api.memory_cache import DEFAULT_MAX_BYTES
from crypto_predictor.api.health import bp as health_bp
from crypto_predictor.api.near_cache import NearCache
from crypto_predictor.api.observability import init_observability, metrics_bp
from crypto_predictor.api.rate_limit import init_rate_limit
from crypto_predictor.api.runtime import ServiceHolder
from crypto_predictor.api.security import init_security
from crypto_predictor.config import Config
from crypto_predictor.market.store import CandleStore
from crypto_predictor.serving.service import PredictionService

MAX_BODY_BYTES = 64 * 1024


class App(Flask):
    """Flask, remembering which hooks and views are coroutines: Flask asks ``inspect`` again for
    each of them on every request (four times for a prediction), and the answer never changes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync_of: dict = {}

    def ensure_sync(self, func):
        try:
            return self._sync_of[func]
        except KeyError:
            sync = self._sync_of[func] = super().ensure_sync(func)
            return sync
        except TypeError:  # an unhashable callable: asked every time, as Flask does
            return super().ensure_sync(func)


def _init_cache(app: Flask) -> None:
    cfg = app.config
    if not cfg.get("CACHE_ENABLED", True):
        cache_type = "NullCache"
    elif cfg.get("CACHE_REDIS_URL"):
        cache_type = "RedisCache"
    else:
        cache_type = cfg.get("CACHE_TYPE") or "SimpleCache"
    if cache_type == "SimpleCache":  # in-process: bounded by bytes too (api/memory_cache.py)
        cache_type = "crypto_predictor.api.memory_cache.BoundedMemoryCache"
    options = {}
    if cache_type == "RedisCache":  # redis-py's own timeouts: a frozen server costs one timeout, not a hang
        timeout = float(cfg.get("CACHE_SOCKET_TIMEOUT", 0.15))
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry_on_timeout": False}
    cache.init_app(app, config={"CACHE_TYPE": cache_type, "CACHE_NO_NULL_WARNING": True,
                                "CACHE_DEFAULT_TIMEOUT": int(cfg.get("CACHE_DEFAULT_TIMEOUT", 3600)),
                                "CACHE_KEY_PREFIX": cfg.get("CACHE_KEY_PREFIX", "crypto_predictor:"),
                                "CACHE_OPTIONS": options or None,
                                "CACHE_MAX_BYTES": int(cfg.get("CACHE_MAX_BYTES", DEFAULT_MAX_BYTES))})
    app.extensions["cache_breaker"] = pybreaker.CircuitBreaker(
        fail_max=int(cfg.get("CACHE_BREAKER_FAILURES", 3)), reset_timeout=float(cfg.get("CACHE_BREAKER_RESET_SECONDS", 15)),
        name="cache", throw_new_error_on_trip=False)
    near_seconds = float(cfg.get("NEAR_CACHE_SECONDS", 5))
    if cache_type != "NullCache" and near_seconds > 0:
        app.extensions["near_cache"] = NearCache(near_seconds, int(cfg.get("NEAR_CACHE_ENTRIES", 4096)))


def create_app(config: Config | None = None, service=None) -> Flask:
    """The app. ``service``: a PredictionService (or a stand-in) to use instead of a new one."""
    config = config or Config()
    app = App(__name__)
    app.config.from_object(config)
    if app.config.get("MAX_CONTENT_LENGTH") is None:  # Flask's default is None (unlimited)
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # keep the documented field order

    store = CandleStore(app.config["DATABASE_URL"])
    app.extensions["candle_store"] = store
    if service is None:
        service = PredictionService(config, store=store)
    app.extensions["prediction_service"] = ServiceHolder(service)

    init_observability(app)  # first, so its request id and timer exist before any other hook runs
    register_error_handlers(app)
    _init_cache(app)
    app.register_blueprint(health_bp, url_prefix="/api")
    for module in (predict, info, openapi):
        app.register_blueprint(module.bp, url_prefix="/api/v1")
    app.register_blueprint(admin_bp, url_prefix="/api/v1/admin")
    app.register_blueprint(dashboard_bp, url_prefix="/dashboard")
    init_security(app)
    init_rate_limit(app, remote_address, exempt=(health_bp, metrics_bp))  # probes and scrapes: never
    return app
