"""The candle store on a real PostgreSQL server (started by the session, tests/support/servers.py).

Real shared candles go through the same ingest as production; the assertions are those the
SQLite store already meets: upsert counts, a repeated ingest that writes nothing, concurrent
writers on overlapping ranges, and loads identical to SQLite's for the same input.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.market.ingest import ingest_asset
from crypto_predictor.market.store import CandleStore
from crypto_predictor.storage.engine import make_engine
from tests.support.slices import write_frame, write_slice

SINCE = "2021-09-01"
ASSETS = ("bitcoin", "ethereum")


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory, data_dir):
    """September 2021 of BTC and ETH in the shared csv format."""
    return write_slice(data_dir, tmp_path_factory.mktemp("pg_slice"), SINCE, ASSETS)


@pytest.fixture()
def pg_store(postgres_url) -> CandleStore:
    store = CandleStore(postgres_url)
    assert store.engine.dialect.name == "postgresql"
    assert store.init_schema() == store.init_schema()  # idempotent
    return store


def ingest_all(store, folder, **window):
    return {a: ingest_asset(CsvSource(folder), store, a, "1h", **window) for a in ASSETS}


def row_versions(store) -> dict:
    """Every candle's physical row version: any write to a row changes its xmin/ctid."""
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT asset, open_time, xmin::text, ctid::text FROM candles")).all()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_ingest_counts_and_a_repeat_writes_nothing(pg_store, slice_dir):
    first = ingest_all(pg_store, slice_dir)
    for asset, report in first.items():
        assert report.received > 700 and report.validation.rejected_total == 0
        assert (report.inserted, report.updated, report.unchanged) == (len(pg_store.load(asset)), 0, 0)
    assert pg_store.count() == sum(r.inserted for r in first.values())
    assert pg_store.latest_time("bitcoin") == pd.Timestamp("2021-09-30T23:00Z")

    before = row_versions(pg_store)
    again = ingest_all(pg_store, slice_dir)
    for asset, report in again.items():
        assert (report.inserted, report.updated, report.unchanged) == (0, 0, first[asset].inserted)
    assert row_versions(pg_store) == before  # not one row rewritten


def test_upsert_counts_inserts_updates_and_unchanged(pg_store, data_dir, tmp_path):
    btc = CsvSource(data_dir).fetch("bitcoin", start=SINCE).candles
    old, new = btc.iloc[:-24], btc.iloc[-24:]
    write_frame(tmp_path / "BTCUSDT-1h.csv.gz", old)
    assert ingest_asset(CsvSource(tmp_path), pg_store, "bitcoin").inserted == len(old)

    # A provider revises three stored candles and 24 new ones arrive; the operator accepts the revision.
    revised = btc.copy()
    moved = revised.index[[10, 200, len(old) - 1]]
    revised.loc[moved, "close"] = revised.loc[moved, "close"] * 1.001
    revised.loc[moved, "high"] = revised.loc[moved, ["high", "close"]].max(axis=1)
    revised.loc[moved[0], "volume"] = 0.0
    write_frame(tmp_path / "BTCUSDT-1h.csv.gz", revised)
    before = row_versions(pg_store)
    report = ingest_asset(CsvSource(tmp_path), pg_store, "bitcoin", revise=True)
    assert (report.inserted, report.updated, report.unchanged) == (len(new), 3, len(old) - 3)

    stored = pg_store.load("bitcoin")
    expected = revised.set_index("open_time")
    assert len(stored) == len(btc)
    for col in ("open", "high", "low", "close", "volume"):
        assert stored[col].tolist() == expected[col].tolist(), col
    after = row_versions(pg_store)
    rewritten = {key[1] for key in before if after[key] != before[key]}
    assert rewritten == {t.to_pydatetime() for t in expected.index[[10, 200, len(old) - 1]]}


def test_concurrent_writers_on_overlapping_ranges(pg_store, data_dir):
    """Six threads, each its own engine, upsert overlapping windows of BTC and ETH at once."""
    source = CsvSource(data_dir)
    frames = {a: source.fetch(a, start=SINCE).candles for a in ASSETS}
    windows = [(0, 400), (200, 600), (100, 720)]
    jobs = [(a, lo, hi) for a in ASSETS for lo, hi in windows]
    barrier = threading.Barrier(len(jobs))
    results, errors = [], []

    def write(asset, lo, hi):
        store = CandleStore(pg_store.engine.url.render_as_string(hide_password=False))
        try:
            frame = frames[asset].iloc[lo:hi].reset_index(drop=True)
            barrier.wait(10)
            # Two rounds: the second races the others' first round and must insert nothing twice.
            for _ in range(2):
                results.append((asset, store.upsert(asset, "1h", frame, "csv")))
        except Exception as exc:  # collected: an exception in a thread would otherwise vanish
            errors.append(repr(exc))
        finally:
            store.engine.dispose()

    threads = [threading.Thread(target=write, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 2 * len(jobs)
    for asset in ASSETS:
        expected = frames[asset].iloc[: max(hi for _, hi in windows)]
        stored = pg_store.load(asset)
        assert list(stored.index) == list(expected["open_time"])
        assert stored["close"].tolist() == expected["close"].tolist()
        counts = [c for a, c in results if a == asset]
        # Each candle was inserted by exactly one writer and never rewritten (all wrote equal values).
        assert sum(c["inserted"] for c in counts) == len(expected)
        assert sum(c["updated"] for c in counts) == 0
        written = sum(len(frames[asset].iloc[lo:hi]) for lo, hi in windows)
        assert sum(c["inserted"] + c["unchanged"] for c in counts) == 2 * written


def test_loads_match_sqlite(pg_store, slice_dir, tmp_path):
    lite = CandleStore(f"sqlite:///{tmp_path / 'same.db'}")
    lite.init_schema()
    for store in (pg_store, lite):
        ingest_all(store, slice_dir)
    for asset in ASSETS:
        pd.testing.assert_frame_equal(pg_store.load(asset), lite.load(asset))
        window = ("2021-09-10T05:00Z", "2021-09-12T00:00Z")
        pd.testing.assert_frame_equal(pg_store.load(asset, "1h", *window), lite.load(asset, "1h", *window))
        assert pg_store.latest_time(asset) == lite.latest_time(asset)
        assert pg_store.count(asset) == lite.count(asset) > 700
    assert pg_store.load("bitcoin", "1d").empty and lite.load("bitcoin", "1d").empty


def test_a_statement_past_the_timeout_is_cancelled(postgres_url):
    engine = make_engine(postgres_url, statement_timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3
        with engine.connect() as conn:  # the pool recovers: the next statement runs
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
