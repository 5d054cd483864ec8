"""Bearer tokens: reading one from the request, comparing it in constant time, and the 401 answer.

Shared by the admin routes (ADMIN_TOKEN) and /metrics (METRICS_TOKEN).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import request

from crypto_predictor.api.errors import error_response


def presented_bearer() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def bearer_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison. Hashing first makes it independent of the tokens' lengths too."""
    if not presented or not expected:
        return False
    digest = lambda value: hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()  # noqa: E731
    return hmac.compare_digest(digest(presented), digest(expected))


def unauthorized(realm: str):
    """401 in the common error shape; RFC 6750's ``invalid_token`` when a token was sent but is wrong."""
    presented = presented_bearer()
    challenge = f'Bearer realm="{realm}"' + (', error="invalid_token"' if presented else "")
    message = "invalid bearer token" if presented else "this endpoint needs an Authorization: Bearer token"
    return error_response(401, "unauthorized", message, {"WWW-Authenticate": challenge})
