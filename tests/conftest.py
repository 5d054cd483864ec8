"""Fixtures shared by every test package: shared data, a fake market server, stores, and real
PostgreSQL and Redis servers started on 127.0.0.1 for the session (tests/support/servers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from crypto_predictor.config import TestConfig
from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.market.store import CandleStore
from tests.support.fake_market import FakeMarket
from tests.support import servers
from tests.support.slices import DATA_END

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CRYPTO_PREDICTOR_DATA_DIR", REPO.parent / "shared" / "data" / "ohlcv"))
# Tests read the shared candles up to DATA_END (tests/support/slices.py); fake providers live just
# after its last candle closed.
FAKE_NOW_MS = int((DATA_END + pd.Timedelta(hours=1, seconds=30)).value // 1_000_000)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "BTCUSDT-1h.csv.gz").is_file():
        pytest.fail(f"shared market data not found at {DATA_DIR} (set CRYPTO_PREDICTOR_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def btc_candles(data_dir) -> pd.DataFrame:
    return CsvSource(data_dir).fetch("bitcoin", end=DATA_END).candles


@pytest.fixture(scope="session")
def eth_candles(data_dir) -> pd.DataFrame:
    return CsvSource(data_dir).fetch("ethereum", end=DATA_END).candles


@pytest.fixture(scope="session")
def fear_greed_csv(data_dir) -> Path:
    path = data_dir.parent / "sentiment" / "fear_greed.csv"
    if not path.is_file():
        pytest.fail(f"shared sentiment data not found at {path}")
    return path


@pytest.fixture(scope="session")
def fear_greed_rows(fear_greed_csv) -> pd.DataFrame:
    return pd.read_csv(fear_greed_csv)


@pytest.fixture()
def fake_market(btc_candles, eth_candles, fear_greed_rows):
    """Binance, CoinGecko and Fear & Greed look-alike on 127.0.0.1: BTC and ETH since 2021-06, the index to now."""
    cut = pd.Timestamp("2021-06-01T00:00:00Z")
    pairs = {"BTCUSDT": btc_candles[btc_candles["open_time"] >= cut].reset_index(drop=True),
             "ETHUSDT": eth_candles[eth_candles["open_time"] >= cut].reset_index(drop=True)}
    market = FakeMarket(pairs, {"bitcoin": "BTCUSDT", "ethereum": "ETHUSDT"}, FAKE_NOW_MS,
                        fear_greed=fear_greed_rows).start()
    yield market
    market.stop()


@pytest.fixture()
def test_config(fake_market, tmp_path):
    return TestConfig(
        BINANCE_BASE_URL=fake_market.url,
        COINGECKO_BASE_URL=fake_market.url,
        FEAR_GREED_BASE_URL=fake_market.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'test.db'}",
    )


@pytest.fixture()
def store(tmp_path) -> CandleStore:
    s = CandleStore(f"sqlite:///{tmp_path / 'candles.db'}")
    s.init_schema()
    return s


def _server(server_class):
    server, missing = servers.start_or_explain(server_class)
    if server is None:
        if os.environ.get("CI"):  # CI installs both servers: their absence is a failure there
            pytest.fail(f"{missing}: {servers.SETUP_HINT}")
        pytest.skip(servers.SETUP_HINT)
    return server


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster of this session on 127.0.0.1 (tests/support/servers.py)."""
    server = _server(servers.PostgresServer)
    yield server
    server.stop()


@pytest.fixture()
def postgres_url(postgres_server) -> str:
    """SQLAlchemy URL (postgresql+psycopg) of a fresh, empty database for this test (dropped after it)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def redis_server():
    server = _server(servers.RedisServer)
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server) -> str:
    """URL of the session's Redis server, emptied for this test."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url
