"""Flask extension objects, created bare and bound to an app in ``create_app``.

``cache`` is shared by every app the factory makes: Flask-Caching keeps each app's
backend in ``app.extensions``. The rate limiter (api/rate_limit.py) is made per app,
since it holds its own counts and settings.
"""

from __future__ import annotations

from flask import request
from flask_caching import Cache

cache = Cache()


def remote_address() -> str:
    """Rate-limit key: the peer address. Not X-Client-Id, which any client can rotate.

    Behind a load balancer, wrap the app in werkzeug's ProxyFix so this is the client's.
    """
    return request.remote_addr or "unknown"
