"""The near cache in front of Redis: a worker's repeated hits cost Redis one read, and it stays honest."""

from __future__ import annotations

import time

import redis


def _gets(client: redis.Redis) -> dict:
    stats = client.info("commandstats")
    return {cmd: stats.get(f"cmdstat_{cmd}", {}).get("calls", 0) for cmd in ("get", "mget")}


def test_repeated_hits_cost_redis_one_read(make_app, redis_url):
    server = redis.Redis.from_url(redis_url)
    server.flushall()
    near = 0.6
    worker = make_app(CACHE_REDIS_URL=redis_url, NEAR_CACHE_SECONDS=near).test_client()
    other = make_app(CACHE_REDIS_URL=redis_url, NEAR_CACHE_SECONDS=near).test_client()
    body = {"symbol": "bitcoin", "timeframe": "1h"}
    first = worker.post("/api/v1/predict", json=body).get_json()
    assert first["metadata"]["cache_hit"] is False
    server.config_resetstat()
    hits = [worker.post("/api/v1/predict", json=body).get_json() for _ in range(20)]
    assert all(h["metadata"]["cache_hit"] for h in hits)
    assert all(h["data"] == first["data"] for h in hits)
    assert _gets(server)["get"] == 0  # the worker that computed it kept a near copy
    assert other.post("/api/v1/predict", json=body).get_json()["metadata"]["cache_hit"] is True
    for _ in range(10):
        other.post("/api/v1/predict", json=body)
    assert _gets(server)["get"] == 1  # the other worker read Redis once
    time.sleep(near + 0.1)
    assert other.post("/api/v1/predict", json=body).get_json()["metadata"]["cache_hit"] is True
    assert _gets(server)["get"] == 2  # its copy expired: asked Redis again


def test_batch_hits_come_from_the_near_copies_too(make_app, redis_url):
    server = redis.Redis.from_url(redis_url)
    server.flushall()
    client = make_app(CACHE_REDIS_URL=redis_url, NEAR_CACHE_SECONDS=5).test_client()
    client.post("/api/v1/predict", json={"symbol": "bitcoin", "timeframe": "1h"})
    server.config_resetstat()
    batch = client.post("/api/v1/predict/batch", json={"symbols": ["BTC", "ETH"], "timeframe": "1h"}).get_json()
    assert [e.get("cache_hit") for e in batch["data"]] == [True, False]
    assert _gets(server)["mget"] == 1  # one round trip, for ethereum only
    again = client.post("/api/v1/predict/batch", json={"symbols": ["BTC", "ETH"], "timeframe": "1h"}).get_json()
    assert [e.get("cache_hit") for e in again["data"]] == [True, True]
    assert _gets(server)["mget"] == 1  # both near now


def test_off_means_every_hit_reads_redis(make_app, redis_url):
    server = redis.Redis.from_url(redis_url)
    server.flushall()
    client = make_app(CACHE_REDIS_URL=redis_url, NEAR_CACHE_SECONDS=0).test_client()
    assert "near_cache" not in client.application.extensions
    client.post("/api/v1/predict", json={"symbol": "bitcoin", "timeframe": "1h"})
    server.config_resetstat()
    for _ in range(3):
        client.post("/api/v1/predict", json={"symbol": "bitcoin", "timeframe": "1h"})
    assert _gets(server)["get"] == 3
