"""A provider that hangs, drips, rate-limits or refuses never reaches a request: real Gunicorn.

Gunicorn (2 sync workers, gunicorn.conf.py) serves a quick BTC 1h bundle with a live Binance
source pointed at a local HTTP server on 127.0.0.1 that misbehaves on every call, in turn: hangs
for 30 s, drips its body a byte every half second, answers 429 with Retry-After: 60, or sends
klines with infinite prices. Each worker's live refresher keeps asking it (every 0.5 s) while
twenty concurrent clients predict: every request is answered within 2 s from the stored data
(``stale``: the store is behind), no worker is timed out, and nothing the provider sent is stored.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from crypto_predictor.market.store import CandleStore
from tests.support.bundles import quick_production
from tests.support.fake_market import FakeMarket
from tests.support.gunicorn import GunicornServer, tail

pytestmark = pytest.mark.slow

ANSWER_WITHIN = 2.0


@pytest.fixture(scope="module")
def provider(btc_candles):
    market = FakeMarket({"BTCUSDT": btc_candles.tail(48).reset_index(drop=True)}, {}, 0).start()
    poisoned = [list(r) for r in market.klines["BTCUSDT"]]
    for row in poisoned:
        row[4] = "Infinity"
    faults = [{"sleep": 30}, {"drip": 0.5}, {"status": 429, "headers": {"Retry-After": "60"},
                                             "body": {"code": -1003, "msg": "Too many requests"}},
              {"raw": json.dumps(poisoned)}]
    market.fail("/api/v3/klines", *faults * 200)
    yield market
    market.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_dir, provider):
    root = tmp_path_factory.mktemp("provider_faults")
    url = f"sqlite:///{root / 'store.db'}"
    models = root / "models"
    quick_production(url, models, data_dir)
    gunicorn = GunicornServer(root, dict(
        WEB_CONCURRENCY="2", GUNICORN_THREADS="1", DATABASE_URL=url, MODELS_DIR=str(models),
        MARKET_DATA_SOURCE="binance", BINANCE_BASE_URL=provider.url, LIVE_REFRESH_SECONDS="0.5",
        MAX_DATA_AGE_HOURS="0", HTTP_DEADLINE="3", HTTP_READ_TIMEOUT="2", HTTP_RETRIES="1",
        HTTP_BREAKER_FAILURES="1000", RATELIMIT_ENABLED="0", CACHE_ENABLED="0", LOG_LEVEL="warning"))
    gunicorn.start()
    yield gunicorn, CandleStore(url)
    gunicorn.stop()


def _predict(base: str) -> tuple[float, int, dict]:
    started = time.monotonic()
    response = requests.post(f"{base}/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"}, timeout=30)
    return time.monotonic() - started, response.status_code, response.json()


def test_every_request_is_answered_from_the_store_while_the_provider_misbehaves(server, provider):
    gunicorn, store = server
    stored = {a: store.load(a) for a in ("bitcoin", "ethereum")}
    with ThreadPoolExecutor(20) as pool:  # a first request starts each worker's refresher
        list(pool.map(lambda _: _predict(gunicorn.base), range(4)))
    end = time.monotonic() + 12  # long enough for every kind of fault to be met, the 30 s hang included
    results = []
    with ThreadPoolExecutor(20) as pool:
        while time.monotonic() < end:
            results += list(pool.map(lambda _: _predict(gunicorn.base), range(20)))
            health = requests.get(f"{gunicorn.base}/api/health", timeout=ANSWER_WITHIN)
            assert health.status_code == 200
    slowest = max(r[0] for r in results)
    print(f"provider faults: {len(results)} requests, slowest {slowest:.3f} s, "
          f"{provider.count('/api/v3/klines')} provider calls met a fault")
    assert all(status == 200 and body["data"]["stale"] is True for _, status, body in results)
    assert slowest < ANSWER_WITHIN, f"slowest of {len(results)} requests took {slowest:.2f} s"
    assert provider.count("/api/v3/klines") >= 4  # the refreshers did meet every fault
    log = tail(gunicorn.output, 100_000)
    assert "WORKER TIMEOUT" not in log and "Traceback" not in log, log[-3000:]
    for asset, before in stored.items():  # nothing the provider sent was stored
        assert store.load(asset).equals(before), asset
