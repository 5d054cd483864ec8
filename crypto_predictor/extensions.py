"""Flask extension objects, created bare and bound to an app in ``create_app``.

``cache`` is shared by every app the factory makes: Flask-Caching keeps each app's
backend in ``app.extensions``. Flask-Limiter instead keeps its storage and its enabled
flag on the Limiter object itself, so one module-level limiter would let the last app
built (tests build many) reconfigure the others: ``new_limiter()`` makes one per app.
"""

from __future__ import annotations

from flask import request
from flask_caching import Cache
from flask_limiter import Limiter

cache = Cache()


def remote_address() -> str:
    """Rate-limit key: the peer address. Not X-Client-Id, which any client can rotate.

    Behind a load balancer, wrap the app in werkzeug's ProxyFix so this is the client's.
    """
    return request.remote_addr or "unknown"


def new_limiter() -> Limiter:
    # Limits, storage and the on/off switch come from app.config (RATELIMIT_*).
    return Limiter(key_func=remote_address)
