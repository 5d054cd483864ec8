"""Provider clients against a real HTTP server on 127.0.0.1 serving provider-shaped payloads."""

import time

import pandas as pd
import pytest

from crypto_predictor.config import TestConfig
from crypto_predictor.errors import MarketDataUnavailable, ProviderBanned
from crypto_predictor.market.binance import BinanceSource
from crypto_predictor.market.coingecko import CoinGeckoSource
from tests.conftest import FAKE_NOW_MS

CLOCK = lambda: FAKE_NOW_MS / 1000  # noqa: E731  the providers' "now" is just after the data ends


def binance(config):
    return BinanceSource(config, clock=CLOCK)


def test_binance_pages_across_more_than_1000_candles(test_config, fake_market, btc_candles):
    start = pd.Timestamp("2021-08-01T00:00:00Z")
    result = binance(test_config).fetch("bitcoin", "1h", start=start)
    expected = btc_candles[btc_candles["open_time"] >= start].reset_index(drop=True)
    assert len(expected) > 1000
    assert fake_market.count("/api/v3/klines") == 2
    assert result.interval == "1h" and result.asset == "bitcoin"
    assert len(result.candles) == len(expected)
    assert (result.candles["open_time"].to_numpy() == expected["open_time"].to_numpy()).all()
    assert result.candles["close"].to_numpy() == pytest.approx(expected["close"].to_numpy())
    assert result.candles["close"].dtype == "float64"
    first_query = fake_market.requests[0][1]
    assert first_query["symbol"] == "BTCUSDT" and first_query["limit"] == "1000"


def test_binance_keeps_only_closed_candles(test_config, fake_market):
    mid_candle = FAKE_NOW_MS / 1000 - 1800  # 23:30: the 23:00 candle is still forming
    src = BinanceSource(test_config, clock=lambda: mid_candle)
    result = src.fetch("BTC", "1h", start="2021-09-30T00:00:00Z")
    assert result.candles["open_time"].max() == pd.Timestamp("2021-09-30T22:00:00Z")


def test_429_with_retry_after_then_success(test_config, fake_market):
    fake_market.fail("/api/v3/klines", {"status": 429, "headers": {"Retry-After": "1"},
                                        "body": {"code": -1003, "msg": "Too many requests"}})
    started = time.monotonic()
    result = binance(test_config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert time.monotonic() - started >= 0.9  # Retry-After honoured
    assert fake_market.count("/api/v3/klines") == 2
    assert len(result.candles) == 24


def test_500_then_success(test_config, fake_market):
    fake_market.fail("/api/v3/klines", {"status": 500, "body": {"msg": "internal"}})
    result = binance(test_config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert fake_market.count("/api/v3/klines") == 2
    assert len(result.candles) == 24


def test_persistent_5xx_carries_the_providers_reason(test_config, fake_market):
    fake_market.fail("/api/v3/klines", *[{"status": 503, "body": {"msg": "Service unavailable, maintenance"}}] * 5)
    with pytest.raises(MarketDataUnavailable) as err:
        binance(test_config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert "maintenance" in err.value.reason
    assert fake_market.count("/api/v3/klines") == test_config.HTTP_RETRIES + 1


def test_read_timeout_becomes_market_data_unavailable(fake_market, tmp_path):
    config = TestConfig(BINANCE_BASE_URL=fake_market.url, HTTP_READ_TIMEOUT=0.3, HTTP_RETRIES=1)
    fake_market.fail("/api/v3/klines", {"sleep": 1.0}, {"sleep": 1.0})
    started = time.monotonic()
    with pytest.raises(MarketDataUnavailable) as err:
        binance(config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert err.value.reason == "timeout"
    assert time.monotonic() - started < 5


def test_malformed_json_is_a_clear_error(test_config, fake_market):
    fake_market.fail("/api/v3/klines", {"raw": "<html>oops</html>"})
    with pytest.raises(MarketDataUnavailable, match="malformed JSON"):
        binance(test_config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")


def test_unexpected_payload_shape_is_a_clear_error(test_config, fake_market):
    fake_market.fail("/api/v3/klines", {"raw": '{"not": "a list"}'})
    with pytest.raises(MarketDataUnavailable, match="unexpected klines payload"):
        binance(test_config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")


def test_binance_418_stops_without_retrying(test_config, fake_market):
    fake_market.fail("/api/v3/klines", {"status": 418, "body": {"code": -1003, "msg": "IP banned until 1633046400000"}})
    with pytest.raises(ProviderBanned, match="418"):
        binance(test_config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert fake_market.count("/api/v3/klines") == 1


def test_binance_invalid_symbol_reason(test_config, fake_market):
    with pytest.raises(MarketDataUnavailable) as err:
        binance(test_config).fetch("ripple", "1h", start="2021-09-30T00:00:00Z")
    assert err.value.reason == "Invalid symbol."


def test_unreachable_provider():
    config = TestConfig(BINANCE_BASE_URL="http://127.0.0.1:9", HTTP_RETRIES=0)
    with pytest.raises(MarketDataUnavailable, match="could not connect"):
        binance(config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")


def test_coingecko_hourly_candles_match_the_exchange_closes(test_config, fake_market, btc_candles):
    src = CoinGeckoSource(test_config, clock=CLOCK)
    result = src.fetch("bitcoin", "1h", start="2021-09-01T00:00:00Z")
    assert result.interval == "1h" and result.notes == []
    got = result.candles.set_index("open_time")
    ref = btc_candles.set_index("open_time").loc[got.index]
    assert got["close"].to_numpy() == pytest.approx(ref["close"].to_numpy())
    # open is the previous candle's close, and high/low bracket the body
    assert (got["high"] >= got[["open", "close"]].max(axis=1)).all()
    assert got.index.max() == pd.Timestamp("2021-09-30T23:00:00Z")  # the "now" sample is not a closed candle
    assert fake_market.requests[-1][1]["days"] == "31"


def test_coingecko_records_the_daily_granularity_it_returned(test_config, fake_market):
    src = CoinGeckoSource(test_config, clock=CLOCK)
    result = src.fetch("ethereum", "1h", start="2021-06-10T00:00:00Z")
    assert result.interval == "1d"
    assert "CoinGecko returned 1d" in result.notes[0]
    assert (result.candles["open_time"].dt.hour == 0).all()


def test_coingecko_sends_the_api_key_header(fake_market):
    demo = TestConfig(COINGECKO_BASE_URL=fake_market.url, COINGECKO_API_KEY="demo-key")
    CoinGeckoSource(demo, clock=CLOCK).fetch("bitcoin", "1h", start="2021-09-29T00:00:00Z")
    headers = {k.lower(): v for k, v in fake_market.requests[-1][2].items()}
    assert headers["x-cg-demo-api-key"] == "demo-key"
    pro = TestConfig(COINGECKO_BASE_URL=fake_market.url, COINGECKO_API_KEY="pro-key", COINGECKO_API_PLAN="pro")
    CoinGeckoSource(pro, clock=CLOCK).fetch("bitcoin", "1h", start="2021-09-29T00:00:00Z")
    headers = {k.lower(): v for k, v in fake_market.requests[-1][2].items()}
    assert headers["x-cg-pro-api-key"] == "pro-key" and "x-cg-demo-api-key" not in headers


def test_coingecko_unknown_coin_reason(test_config, fake_market):
    with pytest.raises(MarketDataUnavailable) as err:
        CoinGeckoSource(test_config, clock=CLOCK).fetch("solana", "1h")
    assert err.value.reason == "coin not found"


# ---------------------------------------------------------------- deadlines and the circuit breaker

def test_a_dripping_body_is_cut_off_at_the_deadline(fake_market):
    config = TestConfig(BINANCE_BASE_URL=fake_market.url, HTTP_DEADLINE=1.5, HTTP_READ_TIMEOUT=1.0)
    fake_market.fail("/api/v3/klines", {"drip": 0.2})  # each byte well inside the read timeout
    started = time.monotonic()
    with pytest.raises(MarketDataUnavailable, match="deadline") as err:
        binance(config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert err.value.reason == "timeout"
    assert 1.4 < time.monotonic() - started < 2.5


def test_retries_stop_at_the_deadline(fake_market):
    config = TestConfig(BINANCE_BASE_URL=fake_market.url, HTTP_DEADLINE=1.0, HTTP_RETRIES=6, HTTP_BACKOFF=0.4)
    fake_market.fail("/api/v3/klines", *[{"status": 503, "body": {"msg": "busy"}}] * 7)
    started = time.monotonic()
    with pytest.raises(MarketDataUnavailable, match="deadline"):
        binance(config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert time.monotonic() - started < 1.2
    assert 1 < fake_market.count("/api/v3/klines") < 7  # it retried, then stopped before the backoff ran out


def test_a_retry_after_above_the_cap_is_unavailable_now(test_config, fake_market):
    fake_market.fail("/api/v3/klines", {"status": 429, "headers": {"Retry-After": "60"},
                                        "body": {"code": -1003, "msg": "Too many requests"}})
    started = time.monotonic()
    with pytest.raises(MarketDataUnavailable, match="wait 60 s") as err:
        binance(test_config).fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert time.monotonic() - started < 0.5 and fake_market.count("/api/v3/klines") == 1
    assert err.value.details["status"] == 429 and err.value.details["retry_after"] == 60


def test_the_circuit_opens_after_failures_in_a_row_and_closes_after_the_reset(fake_market):
    config = TestConfig(BINANCE_BASE_URL=fake_market.url, HTTP_RETRIES=0, HTTP_BREAKER_FAILURES=3,
                        HTTP_BREAKER_RESET_SECONDS=0.5)
    source = binance(config)
    with pytest.raises(MarketDataUnavailable) as err:  # a "no" to a bad request is an answer, not a failure
        source.fetch("ripple", "1h", start="2021-09-30T00:00:00Z")
    assert err.value.reason == "Invalid symbol."
    fake_market.fail("/api/v3/klines", *[{"status": 500, "body": {"msg": "down"}}] * 3)
    for _ in range(3):
        with pytest.raises(MarketDataUnavailable, match="HTTP 500"):
            source.fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    asked = fake_market.count("/api/v3/klines")
    with pytest.raises(MarketDataUnavailable, match="not asking again") as err:
        source.fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z")
    assert err.value.reason == "circuit open" and fake_market.count("/api/v3/klines") == asked
    time.sleep(0.6)
    assert len(source.fetch("bitcoin", "1h", start="2021-09-30T00:00:00Z").candles) == 24  # trial call closes it
