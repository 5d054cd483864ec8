"""What views share: the per-process service, the caller's A/B id, and a fault-tolerant cache.

The PredictionService object is made in ``create_app`` (cheap) but started, which loads
the model bundles, on first use in each process: Gunicorn forks its workers from a master
that ran ``create_app``, and TensorFlow models loaded before a fork hang the children.
"""

from __future__ import annotations

import logging
import os
import threading

import pybreaker
from flask import current_app, request

from crypto_predictor.api.extensions import cache

log = logging.getLogger("crypto_predictor.api")
MAX_CLIENT_ID = 128
# Seconds a prediction may stay cached: one bar of its timeframe (the key also holds the
# newest candle's time, so a new candle makes a new key sooner).
BAR_SECONDS = {"1h": 3600, "24h": 3600, "7d": 86400, "30d": 86400}


class ServiceHolder:
    """Starts the service once per process id, lazily; a failed start is retried next time."""

    def __init__(self, service):
        self.service = service
        self._started_pid = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._started_pid == os.getpid()

    def get(self):
        if self._started_pid != os.getpid():
            with self._lock:
                if self._started_pid != os.getpid():
                    self.service.start()
                    self._started_pid = os.getpid()
        return self.service


def get_service():
    """The started PredictionService of this app, in this process."""
    return current_app.extensions["prediction_service"].get()


def client_id() -> str:
    """A/B bucket key: the app's X-Client-Id header, else the peer address."""
    value = request.environ.get("HTTP_X_CLIENT_ID", "").strip()  # the header, without a Headers lookup
    if value and len(value) <= MAX_CLIENT_ID:
        return value
    return request.remote_addr or "unknown"


def cache_enabled() -> bool:
    return bool(current_app.config.get("CACHE_ENABLED", True))


def cache_key(kind: str, token) -> str:
    return f"{kind}:" + "|".join(str(part) for part in token)


def _guarded(what: str, call, *args, default=None):
    """``call(*args)`` through the cache's circuit breaker: a failing or frozen backend (each call
    bounded by CACHE_SOCKET_TIMEOUT) is skipped, and after a few failures in a row not even tried
    for a while; the request is then served uncached."""
    try:
        return current_app.extensions["cache_breaker"].call(call, *args)
    except pybreaker.CircuitBreakerError:
        return default
    except Exception as exc:
        log.warning("cache %s failed: %s", what, exc.__class__.__name__)
        return default


def _near(near: bool):
    """This worker's near cache (api/near_cache.py) when the caller's keys allow one, else None."""
    return current_app.extensions.get("near_cache") if near else None


def cache_get(key: str, near: bool = False):
    """The cached value, or None on a miss or when the cache backend is down (serve uncached).

    ``near``: the key names everything its value depends on, so this worker's copy may answer."""
    if not cache_enabled():
        return None
    local = _near(near)
    value = local.get(key) if local is not None else None
    if value is None:
        value = _guarded("read", cache.get, key)
        if local is not None:
            local.set(key, value)
    return value


def cache_get_many(keys: list[str], near: bool = False) -> list:
    """Cached values of ``keys`` in one round trip (Redis MGET), None for each miss."""
    if not cache_enabled() or not keys:
        return [None] * len(keys)
    local = _near(near)
    values = [local.get(k) for k in keys] if local is not None else [None] * len(keys)
    asked = [i for i, v in enumerate(values) if v is None]
    if asked:
        found = _guarded("read", cache.get_many, *[keys[i] for i in asked])
        for i, value in zip(asked, found if found is not None else [None] * len(asked)):
            values[i] = value
            if local is not None:
                local.set(keys[i], value)
    return values


def cache_set(key: str, value, timeframe: str | None = None, near: bool = False) -> None:
    if not cache_enabled():
        return
    timeout = int(current_app.config.get("CACHE_DEFAULT_TIMEOUT", 3600))
    if timeframe in BAR_SECONDS:
        timeout = min(timeout, BAR_SECONDS[timeframe])
    stored = _guarded("write", cache.set, key, value, timeout)
    local = _near(near)
    if stored and local is not None:  # a near copy mirrors the shared cache, never more
        local.set(key, value, timeout)


def cache_clear_near() -> None:
    local = current_app.extensions.get("near_cache")
    if local is not None:
        local.clear()
