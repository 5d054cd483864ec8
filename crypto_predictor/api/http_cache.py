"""HTTP validators for the app's polling: ETag and Cache-Control on GET answers, 304 on a match.

An answer's ETag is a hash of what decides its content (for a prediction the cache token: asset,
timeframe, served version, newest candle), so a matching ``If-None-Match`` is answered 304 before
anything is computed or encoded. ``max-age`` is the time until the next candle closes (the next
index value is published, for sentiment): polling earlier cannot bring anything new. When the store
is already a candle behind, the next refresh can land any moment, so it is ``STALE_MAX_AGE``.
"""

from __future__ import annotations

import hashlib
import math

import pandas as pd
from flask import current_app, request

STALE_MAX_AGE = 60  # seconds: the live refresh's default period
HOUR = pd.Timedelta(hours=1)

CONDITIONAL_HEADERS = (("If-None-Match", "An ETag from an earlier answer: 304 (no body) while it still holds"),)


def etag(*parts) -> str:
    """A strong validator (unquoted) for the values an answer is made from."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def seconds_until(moment: pd.Timestamp, now: pd.Timestamp, most: int) -> int:
    """Whole seconds from ``now`` to ``moment``, at most ``most``; STALE_MAX_AGE once it has passed."""
    left = (moment - now).total_seconds()
    return STALE_MAX_AGE if left <= 0 else int(min(most, math.ceil(left)))


def next_candle_max_age(newest_open: pd.Timestamp | None, now: pd.Timestamp) -> int:
    """Until the candle after the newest stored one closes (two hours after the newest one opened)."""
    return STALE_MAX_AGE if newest_open is None else seconds_until(newest_open + 2 * HOUR, now, 3600)


def not_modified(tag: str) -> bool:
    return request.method in ("GET", "HEAD") and request.if_none_match.contains_weak(tag)


def conditional(tag: str, max_age: int, private: bool = False, build=None):
    """304 when the client holds ``tag``, else ``build()``'s response; both carry the validators.
    ``private``: the answer depends on the client (A/B routing), so shared caches must not keep it."""
    response = current_app.response_class(status=304) if not_modified(tag) else build()
    response.set_etag(tag)
    response.cache_control.max_age = max_age
    if private:
        response.cache_control.private = True
        response.vary.add("X-Client-Id")
    else:
        response.cache_control.public = True
    return response
