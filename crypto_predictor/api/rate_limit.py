"""Per-client rate limit: RATELIMIT_DEFAULT per client address and route, 429 with Retry-After.

Configured like Flask-Limiter was (RATELIMIT_ENABLED, RATELIMIT_DEFAULT such as
"600 per minute" or "10/second; 600/minute", RATELIMIT_STORAGE_URI) with the same meaning:
fixed windows that open at a client's first request, one count per client per route,
health and metrics exempt, unmatched URLs (404/405) not counted.

Why not Flask-Limiter itself: on every request it resolves decorated, blueprint, application
and meta limits and exemptions again, which cost ~140 us of a ~350 us cached /predict; this app
has one set of default limits, so the check is done here with the ``limits`` library
Flask-Limiter is built on. The counts live in this process for memory:// (``limits``'
MemoryStorage restarts an expiry thread every 10 ms under load, a few percent of a worker's
CPU) and in the ``limits`` storage named by the URI otherwise (Redis: shared by every worker).

A storage that cannot be reached lets requests through (logged at most once a minute): the
limit protects capacity and must not turn a Redis outage into an API outage.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from flask import Flask, request
from werkzeug.exceptions import TooManyRequests

log = logging.getLogger("crypto_predictor.api")
KEY_PREFIX = "crypto_predictor"
STORAGE_WARN_SECONDS = 60.0


class LocalWindows:
    """Fixed-window counts for this process (memory://); expired windows are swept once a window."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._windows: dict = {}  # key -> [count, window end]
        self._lock = threading.Lock()
        self._swept = clock()

    def hit(self, key, amount: int, period: float):
        """(allowed, seconds until this key's window ends)."""
        now = self._clock()
        with self._lock:
            if now - self._swept >= period:
                self._swept = now
                self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
            window = self._windows.get(key)
            if window is None or window[1] <= now:
                window = self._windows[key] = [0, now + period]
            if window[0] >= amount:
                return False, window[1] - now
            window[0] += 1
            return True, window[1] - now


class SharedWindows:
    """Fixed-window counts in a ``limits`` storage (redis://, memcached://, ...)."""

    def __init__(self, uri: str):
        from limits.storage import storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        self._strategy = FixedWindowRateLimiter(storage_from_string(uri))

    def hit(self, key, item):
        if self._strategy.hit(item, *key):
            return True, 0.0
        return False, self._strategy.get_window_stats(item, *key).reset_time - time.time()


class RateLimiter:
    """The before-request check; ``exempt`` names blueprints that are never counted."""

    def __init__(self, limits_text: str, storage_uri: str, key_func):
        from limits import parse_many

        try:
            items = parse_many(limits_text)
        except ValueError as exc:
            raise ValueError(f"RATELIMIT_DEFAULT {limits_text!r} is not a rate limit: {exc}") from None
        # (limit, amount, window seconds), shortest window first; the first breach answers (as in
        # Flask-Limiter).
        items = sorted(items, key=lambda item: item.get_expiry())
        self.rules = [(item, item.amount, item.get_expiry()) for item in items]
        self.key_func = key_func
        self.exempt_blueprints: set = set()
        self._counted: dict = {}  # endpoint -> whether it is counted (not in an exempt blueprint)
        self.local = storage_uri.strip().lower().startswith("memory://")
        self._store = LocalWindows() if self.local else SharedWindows(storage_uri)
        self._warned = -STORAGE_WARN_SECONDS

    def exempt(self, blueprint) -> None:
        self.exempt_blueprints.add(getattr(blueprint, "name", blueprint))
        self._counted.clear()

    def init_app(self, app: Flask) -> None:
        app.extensions["rate_limit"] = self
        app.before_request(self.check)

    def check(self) -> None:
        endpoint = request.endpoint
        if endpoint is None:  # no route matched: Flask answers 404/405 without running a view
            return
        counted = self._counted.get(endpoint)
        if counted is None:
            counted = self._counted[endpoint] = endpoint.rpartition(".")[0] not in self.exempt_blueprints
        if not counted:
            return
        client = self.key_func()
        for item, amount, period in self.rules:
            try:
                if self.local:
                    ok, wait = self._store.hit((client, endpoint, amount, period), amount, period)
                else:
                    ok, wait = self._store.hit((KEY_PREFIX, client, endpoint), item)
            except Exception as exc:  # noqa: BLE001 - storage down: serve, and say so now and then
                self._storage_failed(exc)
                return
            if not ok:
                raise TooManyRequests(description=str(item), retry_after=max(1, min(period, math.ceil(wait))))

    def _storage_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= STORAGE_WARN_SECONDS:
            self._warned = now
            log.warning("rate-limit storage unavailable, not limiting: %s: %s", type(exc).__name__, exc)


def init_rate_limit(app: Flask, key_func, exempt=()) -> RateLimiter | None:
    """The limiter configured from RATELIMIT_*; None when RATELIMIT_ENABLED is off or no limit is set."""
    cfg = app.config
    limits_text = str(cfg.get("RATELIMIT_DEFAULT") or "").strip()
    if not cfg.get("RATELIMIT_ENABLED", True) or not limits_text:
        return None
    limiter = RateLimiter(limits_text, str(cfg.get("RATELIMIT_STORAGE_URI") or "memory://"), key_func)
    for blueprint in exempt:
        limiter.exempt(blueprint)
    limiter.init_app(app)
    return limiter
