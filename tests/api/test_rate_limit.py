"""The rate limiter (api/rate_limit.py): per client and route, shared through Redis, fail-open, configured.

The 429 shape and the proxy-aware client address are tested in test_predict.py and test_proxy_fix.py.
"""

from __future__ import annotations

import logging

import pytest

from crypto_predictor.api.rate_limit import LocalWindows
from tests.api.helpers import assert_error
from tests.support.servers import free_port

SYMBOLS = "/api/v1/symbols"


def test_counts_are_per_route_and_unmatched_urls_are_not_counted(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="2 per minute").test_client()
    assert [client.get("/api/v1/nothing-here").status_code for _ in range(3)] == [404, 404, 404]
    assert [client.get(SYMBOLS).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/api/v1/models").status_code == 200  # another route, its own count


def test_several_limits_the_first_breached_answers(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="10 per hour; 2 per minute").test_client()
    assert [client.get(SYMBOLS).status_code for _ in range(2)] == [200, 200]
    error = assert_error(client.get(SYMBOLS), 429, "rate_limited")
    assert "2 per 1 minute" in error["message"]


def test_disabled_or_empty_means_no_limit(make_app):
    for overrides in ({"RATELIMIT_ENABLED": False, "RATELIMIT_DEFAULT": "1 per minute"},
                      {"RATELIMIT_ENABLED": True, "RATELIMIT_DEFAULT": ""}):
        client = make_app(**overrides).test_client()
        assert {client.get(SYMBOLS).status_code for _ in range(3)} == {200}, overrides


def test_a_bad_limit_is_refused_at_start(make_app):
    with pytest.raises(ValueError, match="RATELIMIT_DEFAULT"):
        make_app(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="lots per minute")


def test_redis_counts_are_shared_by_every_worker(make_app, redis_url):
    # Two apps stand for two Gunicorn workers (or instances) behind one Redis.
    settings = {"RATELIMIT_ENABLED": True, "RATELIMIT_DEFAULT": "3 per minute", "RATELIMIT_STORAGE_URI": redis_url}
    first, second = make_app(**settings).test_client(), make_app(**settings).test_client()
    assert [first.get(SYMBOLS).status_code, second.get(SYMBOLS).status_code, first.get(SYMBOLS).status_code] == [
        200, 200, 200]
    response = second.get(SYMBOLS)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert first.get(SYMBOLS, environ_base={"REMOTE_ADDR": "198.51.100.4"}).status_code == 200  # another client
    assert second.get("/api/health").status_code in (200, 503)  # never throttled


def test_unreachable_storage_lets_requests_through(make_app, caplog):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="1 per minute", RATELIMIT_STORAGE_URI=dead).test_client()
    with caplog.at_level(logging.WARNING, logger="crypto_predictor.api"):
        assert [client.get(SYMBOLS).status_code for _ in range(3)] == [200, 200, 200]
    warnings = [r for r in caplog.records if "rate-limit storage unavailable" in r.getMessage()]
    assert len(warnings) == 1  # said once, not once per request


def test_local_windows_open_at_first_hit_and_are_swept():
    now = [100.0]
    windows = LocalWindows(clock=lambda: now[0])
    assert windows.hit("a", 2, 60) == (True, 60.0)
    now[0] = 130.0
    assert windows.hit("a", 2, 60) == (True, 30.0)
    assert windows.hit("a", 2, 60) == (False, 30.0)
    assert windows.hit("b", 2, 60)[0] is True  # another key, another window
    now[0] = 160.0  # a's window has ended: a new one opens
    assert windows.hit("a", 2, 60) == (True, 60.0)
    now[0] = 230.0  # b's ended too; the sweep (once a window) drops it
    windows.hit("a", 2, 60)
    assert set(windows._windows) == {"a"}
