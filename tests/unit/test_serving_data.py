"""ServingData on a real SQLite store holding two days of the shared BTC and ETH candles: the
newest-candle memo (one query for many assets, expiry after its ttl, forgotten after this
worker's own writes) and the windows and bars it keeps until a newer candle is stored."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import event

from crypto_predictor.datasets import bars
from crypto_predictor.serving.data import ServingData
from tests.support.slices import fill_store

START, CUT = "2021-09-28T00:00Z", pd.Timestamp("2021-09-29T23:00Z")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture()
def store(tmp_path, data_dir):
    return fill_store(f"sqlite:///{tmp_path / 'candles.db'}", data_dir, start=START, end=CUT)


@pytest.fixture()
def newest_queries(store):
    """How many statements asked the store for a newest open time so far."""
    seen = []

    def count(conn, cursor, statement, *args):
        if "max(candles.open_time)" in statement.lower():
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    yield lambda: len(seen)
    event.remove(store.engine, "before_cursor_execute", count)


def add_next_candle(store, data_dir, assets=("bitcoin",)):
    fill_store(store, data_dir, assets, start=CUT + pd.Timedelta(hours=1), end=CUT + pd.Timedelta(hours=1))


def test_newest_times_of_many_assets_come_from_one_query(store, newest_queries):
    data = ServingData(store, ttl=60)
    assert data.latest(["bitcoin", "ethereum", "solana"]) == {"bitcoin": CUT, "ethereum": CUT, "solana": None}
    assert newest_queries() == 1
    assert data.latest(["ethereum", "bitcoin"]) == {"ethereum": CUT, "bitcoin": CUT}
    assert newest_queries() == 1  # within the ttl: from the memo
    assert data.query_latest([]) == {} and newest_queries() == 1


def test_the_memo_bounds_how_late_a_new_candle_is_seen(store, data_dir, newest_queries):
    clock = Clock()
    data = ServingData(store, ttl=1.0, monotonic=clock)
    assert data.latest(["bitcoin"])["bitcoin"] == CUT
    add_next_candle(store, data_dir)  # another process ingests
    clock.now += 0.9
    assert data.latest(["bitcoin"])["bitcoin"] == CUT  # still the memo, at most ttl old
    clock.now += 0.2
    assert data.latest(["bitcoin"])["bitcoin"] == CUT + pd.Timedelta(hours=1)
    assert newest_queries() == 2


def test_forget_asks_again_at_once(store, data_dir):
    data = ServingData(store, ttl=3600)
    assert data.latest(["bitcoin"])["bitcoin"] == CUT
    add_next_candle(store, data_dir)
    data.forget("bitcoin")  # this worker stored the candle itself
    assert data.latest(["bitcoin"])["bitcoin"] == CUT + pd.Timedelta(hours=1)


def test_a_zero_ttl_asks_every_time(store, newest_queries):
    data = ServingData(store, ttl=0)
    for _ in range(3):
        data.latest(["bitcoin"])
    assert newest_queries() == 3


def test_bars_are_built_once_per_window_and_rebuilt_for_a_new_candle(store, data_dir):
    data = ServingData(store)
    start = CUT - pd.Timedelta(hours=30)
    first, n = data.bars("bitcoin", "1h", start, CUT)
    stored = store.load("bitcoin", "1h", start, CUT)
    assert n == len(stored) and len(first) == 31  # the slice has an outage: bars fill its hours
    assert first.index[0] == start and first.index[-1] == CUT
    pd.testing.assert_frame_equal(first, bars(stored, "1h"))
    assert data.bars("bitcoin", "1h", start, CUT)[0] is first  # kept
    add_next_candle(store, data_dir)
    newer = CUT + pd.Timedelta(hours=1)
    second, _ = data.bars("bitcoin", "1h", start + pd.Timedelta(hours=1), newer)
    assert len(second) == 31 and second.index[-1] == newer
    assert second["close"].iloc[-1] == store.load("bitcoin", "1h", newer)["close"].iloc[0]


def test_everything_derived_is_dropped_every_max_age(store):
    clock = Clock()
    data = ServingData(store, max_age=300, monotonic=clock)
    start = CUT - pd.Timedelta(hours=30)
    first, _ = data.bars("bitcoin", "1h", start, CUT)
    window = data.window("bitcoin", start, CUT)
    clock.now += 299
    assert data.expired() is False and data.bars("bitcoin", "1h", start, CUT)[0] is first
    clock.now += 2
    assert data.expired() is True and data.expired() is False  # once per period
    rebuilt, _ = data.bars("bitcoin", "1h", start, CUT)
    assert rebuilt is not first and data.window("bitcoin", start, CUT) is not window
    pd.testing.assert_frame_equal(rebuilt, first)
