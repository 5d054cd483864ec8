"""A frozen Redis (SIGSTOP on the real server) under load: requests are served uncached, fast.

Gunicorn (2 sync workers) serves a quick BTC 1h bundle with its response cache on a Redis of
its own. Four clients post single and batch predictions while the Redis process is stopped:
every call costs at most the cache's socket timeout, then its circuit breaker skips the cache,
so p99 stays under 1 s. After SIGCONT the cache is used again.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import redis
import requests

from tests.conftest import _server
from tests.support import servers
from tests.support.bundles import quick_production
from tests.support.gunicorn import GunicornServer, tail

pytestmark = pytest.mark.slow

SINGLE = {"symbol": "BTC", "timeframe": "1h"}
BREAKER_RESET = 3
BATCH = {"symbols": ["BTC", "bitcoin", "BTCUSDT", "XBT", "btc", "Bitcoin"], "timeframe": "1h"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_dir):
    own_redis = _server(servers.RedisServer)  # this test stops it: not the session's
    root = tmp_path_factory.mktemp("redis_frozen")
    url = f"sqlite:///{root / 'store.db'}"
    models = root / "models"
    quick_production(url, models, data_dir)
    gunicorn = GunicornServer(root, dict(
        WEB_CONCURRENCY="2", GUNICORN_THREADS="1", DATABASE_URL=url, MODELS_DIR=str(models),
        MARKET_DATA_SOURCE="csv", RATELIMIT_ENABLED="0", CACHE_ENABLED="1", CACHE_REDIS_URL=own_redis.url,
        CACHE_BREAKER_RESET_SECONDS=str(BREAKER_RESET), PREDICTION_LOG="0", LOG_LEVEL="warning",
        NEAR_CACHE_SECONDS="0"))  # every call goes to Redis: the worst case (near copies would answer hits)
    try:
        gunicorn.start()
        yield gunicorn, own_redis
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        gunicorn.stop()
        own_redis.stop()


def _call(base: str, i: int) -> tuple[float, int, bool]:
    path, body = ("/api/v1/predict/batch", BATCH) if i % 3 == 0 else ("/api/v1/predict", SINGLE)
    started = time.monotonic()
    r = requests.post(base + path, json=body, timeout=30)
    meta = r.json()["metadata"]
    return time.monotonic() - started, r.status_code, bool(meta.get("cache_hit") or meta.get("cache_hits"))


def test_a_frozen_redis_costs_at_most_its_timeout(served):
    gunicorn, own_redis = served
    assert _call(gunicorn.base, 1)[2] is False and _call(gunicorn.base, 1)[2] is True  # Redis works
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: _call(gunicorn.base, i), range(240)))
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    seconds = np.array([r[0] for r in results])
    assert all(r[1] == 200 for r in results)
    assert not any(r[2] for r in results)  # nothing could come from the frozen cache
    p99 = float(np.quantile(seconds, 0.99))
    print(f"frozen Redis: {len(seconds)} calls, p50 {np.median(seconds):.4f} s, p99 {p99:.4f} s, max {seconds.max():.4f} s")
    assert p99 < 1.0, f"p99 {p99:.3f} s, max {seconds.max():.3f} s"
    assert "WORKER TIMEOUT" not in tail(gunicorn.output, 100_000)
    with redis.Redis.from_url(own_redis.url, socket_timeout=5) as client:
        assert client.ping()
    time.sleep(BREAKER_RESET + 0.5)  # the breaker's reset time: then the cache is tried again
    _call(gunicorn.base, 1)
    assert _call(gunicorn.base, 1)[2] is True
