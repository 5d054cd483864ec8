"""The prediction cache on a real Redis server, shared by two real Gunicorn workers.

Gunicorn (2 sync workers, gunicorn.conf.py) serves a quick linear BTC bundle from candles in
a real PostgreSQL database, with CACHE_REDIS_URL pointing at the session's Redis. The first
request computes the prediction; every later one, on a new connection, is a cache hit whichever
worker answers. One worker is held by a half-sent request while the other answers, and the
access log (worker pid per request id) proves both answered. The prediction log, which only a
computed (uncached) prediction writes, holds one row.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import create_engine

from crypto_predictor.serving.live_metrics import count
from tests.support.gunicorn import GunicornServer, worker_of
from tests.support.bundles import quick_production

pytestmark = pytest.mark.slow

BODY = {"symbol": "BTC", "timeframe": "1h"}
PREFIX = "crypto_predictor:"  # the app's CACHE_KEY_PREFIX


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_dir, postgres_server, redis_server):
    root = tmp_path_factory.mktemp("redis_cache")
    url = postgres_server.create_database("serve")
    models = root / "models"
    quick_production(url, models, data_dir, seed=1)
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    gunicorn = GunicornServer(root, dict(
        WEB_CONCURRENCY="2", GUNICORN_THREADS="1", DATABASE_URL=url, MODELS_DIR=str(models),
        MARKET_DATA_SOURCE="csv", RATELIMIT_ENABLED="0", CACHE_ENABLED="1", CACHE_REDIS_URL=redis_server.url,
        PREDICTION_LOG="1", LOG_LEVEL="warning"))
    try:
        gunicorn.start()
        yield gunicorn, client, url
    finally:
        gunicorn.stop()
        client.close()


def predict(base: str, request_id: str) -> dict:
    # A new connection per request (no session, Connection: close): any worker may accept it.
    r = requests.post(f"{base}/api/v1/predict", json=BODY, timeout=30,
                      headers={"X-Request-Id": request_id, "Connection": "close"})
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Request-Id") == request_id
    return r.json()


class StalledRequest:
    """A request sent up to its last header line only: the sync worker that accepted it is
    blocked reading it, so requests sent meanwhile are answered by the other worker."""

    def __init__(self, port: int, request_id: str):
        self.body = json.dumps(BODY).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall((f"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
                           f"X-Request-Id: {request_id}\r\n").encode())

    def finish(self) -> dict:
        self.sock.sendall(b"\r\n" + self.body)
        chunks = []
        while chunk := self.sock.recv(65536):
            chunks.append(chunk)
        self.sock.close()
        head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return json.loads(payload)


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_prediction_cached_by_one_worker_is_a_hit_in_the_other(served):
    gunicorn, client, url = served
    assert client.keys(f"{PREFIX}*") == []

    first = predict(gunicorn.base, "r0")
    assert first["metadata"]["cache_hit"] is False
    keys = client.keys(f"{PREFIX}prediction:*")
    assert len(keys) == 1 and b"bitcoin|1h|" in keys[0]  # stored in Redis, not in the worker

    # One worker is held by a half-sent request while the other answers three; then it finishes.
    stalled = StalledRequest(gunicorn.port, "held")
    time.sleep(0.3)  # an idle worker accepts at once
    answers = {rid: predict(gunicorn.base, rid) for rid in ("r1", "r2", "r3")}
    answers["held"] = stalled.finish()

    assert wait_for(lambda: set(answers) | {"r0"} <= set(worker_of(gunicorn.access_log)))
    served_by = worker_of(gunicorn.access_log)
    assert served_by["held"] not in {served_by[r] for r in ("r1", "r2", "r3")}
    pids = {served_by[rid] for rid in answers}
    assert len(pids) == 2 and {parent_pid(p) for p in pids} == {gunicorn.proc.pid}  # two workers of this Gunicorn
    assert served_by["r0"] in pids
    for rid, body in answers.items():
        assert body["metadata"]["cache_hit"] is True, f"{rid} (worker {served_by[rid]}) missed the cache"
        assert body["data"] == first["data"]
    assert len(client.keys(f"{PREFIX}prediction:*")) == 1

    # Only the first request computed (and logged) a prediction; the hits in both workers did not.
    engine = create_engine(url)
    try:
        assert wait_for(lambda: count(engine) >= 1)
        time.sleep(0.5)  # room for a wrongly logged second row to land
        assert count(engine) == 1
    finally:
        engine.dispose()

    # The other read paths work against PostgreSQL too.
    history = requests.get(f"{gunicorn.base}/api/v1/predictions/BTC/history", timeout=30)
    assert history.status_code == 200, history.text
    assert [h["predicted_price"] for h in history.json()["data"]] == [first["data"]["predicted_price"]]
    analysis = requests.get(f"{gunicorn.base}/api/v1/analysis/BTC?days=7", timeout=30)
    assert analysis.status_code == 200, analysis.text
    assert analysis.json()["data"]["symbol"] == "bitcoin"
