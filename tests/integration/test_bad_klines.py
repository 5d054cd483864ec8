"""Bad market data never reaches the store: klines from a real HTTP server on 127.0.0.1, ingested."""

import json

import pandas as pd
import pytest

from crypto_predictor.errors import MarketDataUnavailable
from crypto_predictor.market.binance import BinanceSource
from crypto_predictor.market.ingest import ingest_asset
from tests.conftest import FAKE_NOW_MS

START = pd.Timestamp("2021-09-30T00:00:00Z")


@pytest.fixture()
def source(test_config):
    return BinanceSource(test_config, clock=lambda: FAKE_NOW_MS / 1000)


@pytest.fixture()
def day(fake_market):
    """The 24 klines the fake serves for START's day, as Binance sends them."""
    return [list(r) for r in fake_market.klines["BTCUSDT"] if r[0] >= START.value // 1_000_000][:24]


def serve(fake_market, rows):
    fake_market.fail("/api/v3/klines", {"raw": json.dumps(rows)})


def test_infinite_and_overflowing_prices_are_rejected_rows(fake_market, source, store, day):
    day[3][4] = "Infinity"
    day[7][2] = "1e400"  # parses as inf
    day[9][5] = "inf"  # volume
    serve(fake_market, day)
    report = ingest_asset(source, store, "bitcoin", start=START)
    assert report.rejected == {"non-finite price": 2, "non-finite volume": 1}
    assert report.inserted == 21
    stored = store.load("bitcoin")
    assert len(stored) == 21 and bool((stored[["open", "high", "low", "close", "volume"]].abs() < 1e12).all().all())


@pytest.mark.parametrize("field, value", [(0, "soon"), (0, None), (4, "4o000.1"), (6, [1])])
def test_a_malformed_field_is_a_clear_error_and_stores_nothing(fake_market, source, store, day, field, value):
    day[5][field] = value
    serve(fake_market, day)
    with pytest.raises(MarketDataUnavailable, match="kline 5 has a malformed") as err:
        ingest_asset(source, store, "bitcoin", start=START)
    assert err.value.reason == "malformed kline"
    assert store.count("bitcoin") == 0


def test_rows_outside_the_requested_window_are_dropped_and_reported(fake_market, source, store, day):
    stray = list(fake_market.klines["BTCUSDT"][100])  # months before START, and one far in the future
    future = list(day[-1])
    future[0], future[6] = 4_000_000_000_000, 4_000_003_599_999
    serve(fake_market, [stray] + day + [future])
    report = ingest_asset(source, store, "bitcoin", start=START, end=START + pd.Timedelta(hours=23))
    assert report.inserted == 24 and store.load("bitcoin").index.min() == START
    assert any("dropped 2 row(s) outside the requested window" in line for line in report.lines())


def test_klines_rewriting_stored_history_are_kept_apart(fake_market, source, store, day):
    ingest_asset(source, store, "bitcoin", start=START)
    before = store.load("bitcoin")
    rewritten = [list(r) for r in day]
    for r in rewritten[:12]:  # a provider "correcting" half a day of closed candles to a far lower price
        r[1:5] = [f"{float(x) * 0.6:.8f}" for x in r[1:5]]
    serve(fake_market, rewritten)
    report = ingest_asset(source, store, "bitcoin", start=START)
    assert (report.kept_apart, report.updated, report.inserted) == (12, 0, 0)
    pd.testing.assert_frame_equal(store.load("bitcoin"), before)

    serve(fake_market, rewritten)  # an operator who checked it revises on purpose
    report = ingest_asset(source, store, "bitcoin", start=START, revise=True)
    # 12 rewritten rows and the next one's outlier flag (its previous close moved by 40%)
    assert report.updated == 13 and store.load("bitcoin")["close"].iloc[0] == pytest.approx(
        before["close"].iloc[0] * 0.6, rel=1e-6)


def test_optional_fields_may_be_missing(fake_market, source, store, day):
    day[2][7], day[4][8] = "nan", ""  # quote volume and trades: not used by any feature
    serve(fake_market, day)
    report = ingest_asset(source, store, "bitcoin", start=START)
    assert report.inserted == 24 and report.rejected == {}
