"""The prediction log end to end: served predictions are written, later verified against the
candles that realised them, and turned into live accuracy and history.

A quick linear bundle (bitcoin and ethereum, 1h and 24h) is trained on the shared candles up
to 2021-09-20; the store first holds candles up to 2021-09-29 23:00 (predictions are made "then"),
and the last day is ingested afterwards, as the live ingest would.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from sqlalchemy import create_engine, select

from crypto_predictor.serving.live_metrics import count, live_accuracy
from crypto_predictor.serving import prediction_log as prediction_log_module
from crypto_predictor.serving.prediction_log import PredictionLogWriter, verify
from crypto_predictor.storage.tables import prediction_log
from crypto_predictor.timeutil import iso
from crypto_predictor.config import TestConfig
from crypto_predictor.market.store import CandleStore
from tests.conftest import DATA_DIR
from tests.support.slices import fill_store
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.serving.service import PredictionService
from crypto_predictor.training.pipeline import TrainOptions, train_run

DATA = DATA_DIR
ASSETS = ("bitcoin", "ethereum")
CUT = pd.Timestamp("2021-09-29T23:00Z")  # the store's newest candle when the predictions are made
NOW = pd.Timestamp("2021-09-30T00:00:30Z")


def ingest(store, start, end=None):
    fill_store(store, DATA, ASSETS, start=start, end=end)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, data_dir):
    """The models dir of a linear bundle (production) trained on candles up to 2021-09-20."""
    root = tmp_path_factory.mktemp("plog")
    url = f"sqlite:///{root / 'train.db'}"
    ingest(url, "2021-07-01", "2021-09-20T00:00Z")
    models = root / "models"
    version, _ = train_run(url, ASSETS, ["1h", "24h"], TrainOptions(kinds=("linear",), quick=True, days=45), models,
                           n_jobs=1)
    set_alias(models, "production", version)
    return models


@pytest.fixture()
def store(tmp_path):
    s = CandleStore(f"sqlite:///{tmp_path / 'serve.db'}")
    assert "prediction_log" in s.init_schema()  # db.init_db declares the log table too
    ingest(s, "2021-08-01", CUT)
    return s


def make_service(bundle, store, **overrides):
    config = TestConfig(DATABASE_URL="sqlite://", MODELS_DIR=str(bundle), **overrides)
    return PredictionService(config, store=store, clock=lambda: NOW.timestamp())


def rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(prediction_log).order_by(prediction_log.c.id)).mappings().all()


def test_predictions_are_logged_verified_and_scored(bundle, store):
    svc = make_service(bundle, store)
    hourly = svc.predict("BTC", "1h", client_id="someone")
    daily = svc.predict("BTC", "24h")
    svc.predict("BTC", "24h")  # the same prediction twice: logged twice, counted once
    assert svc.log.flush()
    logged = rows(store.engine)
    assert len(logged) == 3 and svc.log.stats()["written"] == 3
    first = logged[0]
    assert (first["asset"], first["timeframe"], first["kind"], first["client_ab_group"]) == (
        "bitcoin", "1h", "linear", "production")
    assert first["model_version"] == hourly["model_version"]
    assert first["predicted_price"] == pytest.approx(hourly["predicted_price"])
    assert [first["lower80"], first["upper80"]] == pytest.approx(hourly["interval"]["80"])
    assert [first["lower95"], first["upper95"]] == pytest.approx(hourly["interval"]["95"])
    assert iso(first["target_time"]) == hourly["target_time"] == "2021-09-30T01:00:00Z"
    assert first["realised_price"] is None

    # Nothing to verify until the candles reach the targets; then the realising closes fill in.
    assert verify(store) == 0
    ingest(store, "2021-09-30T00:00Z")
    assert verify(store) == 3
    assert verify(store) == 0  # idempotent
    candles = store.load("bitcoin", "1h", "2021-09-30T00:00Z")
    logged = rows(store.engine)
    assert logged[0]["realised_price"] == candles.loc["2021-09-30T00:00Z", "close"]
    assert logged[1]["realised_price"] == candles.loc["2021-09-30T23:00Z", "close"]
    assert iso(logged[1]["realised_at"]) == daily["target_time"] == "2021-10-01T00:00:00Z"

    accuracy = {r["timeframe"]: r for r in live_accuracy(store.engine, version=daily["model_version"])}
    assert set(accuracy) == {"1h", "24h"} and accuracy["24h"]["n"] == 1 and accuracy["1h"]["n"] == 1
    realised = logged[1]["realised_price"]
    up = (daily["predicted_price"] > daily["current_price"]) == (realised > daily["current_price"])
    flat = daily["predicted_price"] == daily["current_price"]  # the skill gate served no-change
    assert accuracy["24h"]["directional_accuracy"] == (0.5 if flat else 1.0 if up else 0.0)
    assert accuracy["24h"]["mae_pct"] == pytest.approx(
        abs(realised - daily["predicted_price"]) / daily["current_price"] * 100, rel=1e-5)
    low, high = daily["interval"]["80"]
    assert accuracy["24h"]["coverage_80"] == (1.0 if low <= realised <= high else 0.0)
    overall = live_accuracy(store.engine, by=())
    assert overall[0]["n"] == 2

    history = svc.history("bitcoin")
    assert [h["timeframe"] for h in history] == ["24h", "1h"]  # newest first, duplicates once
    assert history[0]["status"] == "realised"
    assert history[0]["error"] == pytest.approx(realised - daily["predicted_price"])
    assert history[0]["direction_correct"] is (None if flat else up)
    perf = svc.performance(daily["model_version"])
    assert {r["timeframe"] for r in perf["live"]} == {"1h", "24h"}
    walk_forward = perf["walk_forward"]["bitcoin"]["24h"]
    assert walk_forward["linear"]["n"] == walk_forward["served"]["n"] == walk_forward["naive"]["n"] > 0


def test_rows_without_their_target_candle_use_the_last_close_before_it(bundle, store):
    svc = make_service(bundle, store)
    svc.predict("ETH", "1h")
    svc.log.flush()
    # An outage: the target's candle never arrives, but later ones do.
    ingest(store, "2021-09-30T01:00Z", "2021-09-30T05:00Z")
    assert verify(store) == 1
    realised = rows(store.engine)[0]
    assert realised["realised_price"] == store.load("ethereum", "1h", CUT)["close"].iloc[0]
    assert iso(realised["realised_at"]) == "2021-09-30T00:00:00Z"


def test_logging_can_be_switched_off(bundle, store):
    svc = make_service(bundle, store, PREDICTION_LOG=False)
    svc.predict("BTC", "24h")
    assert svc.log is None and svc.history("BTC") == [] and count(store.engine) == 0


def test_a_full_queue_drops_rows_and_counts_them(store):
    writer = PredictionLogWriter(store.engine, maxsize=1)
    release, entered = threading.Event(), threading.Event()
    real_write = writer._write

    def slow_write(batch):
        entered.set()
        release.wait(10)
        real_write(batch)

    writer._write = slow_write
    row = {"asset": "bitcoin", "timeframe": "1h", "model_version": "v1", "kind": "linear",
           "client_ab_group": "production", "prediction_time": NOW, "data_as_of": NOW, "target_time": NOW,
           "current_price": 1.0, "predicted_price": 1.0}
    assert writer.record(row)
    assert entered.wait(5)  # the writer holds the first row; the queue (size 1) takes one more
    assert writer.record(row) is True
    assert writer.record(row) is False
    assert writer.stats()["dropped"] == 1
    release.set()
    assert writer.flush()
    assert writer.stats()["written"] == 2 and count(store.engine) == 2
    writer.close()


def _row(i=0):
    return {"asset": "bitcoin", "timeframe": "1h", "model_version": "v1", "kind": "linear",
            "client_ab_group": "production", "prediction_time": NOW + pd.Timedelta(seconds=i), "data_as_of": NOW,
            "target_time": NOW + pd.Timedelta(hours=1), "current_price": 1.0, "predicted_price": 1.0}


def test_rows_wait_through_a_database_outage_and_are_written_after_it(tmp_path, monkeypatch):
    monkeypatch.setattr(prediction_log_module, "RETRY_SECONDS", 0.05)
    folder = tmp_path / "not-yet"
    engine = create_engine(f"sqlite:///{folder / 'log.db'}")  # the directory does not exist: every write fails
    writer = PredictionLogWriter(engine, linger=0)
    assert all(writer.record(_row(i)) for i in range(5))
    assert writer.flush()
    stats = writer.stats()
    assert stats["written"] == 0 and stats["waiting_for_database"] == 5 and stats["ok"] is False
    assert stats["failed_writes"] >= 1 and stats["dropped"] == 0
    assert writer.record(_row(5)) and writer.record({"asset": "bitcoin"})  # the second can never be written
    folder.mkdir()  # the database is back
    deadline = time.monotonic() + 10
    while writer.stats()["written"] < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = writer.stats()
    assert stats["written"] == 6 and count(engine) == 6 and stats["waiting_for_database"] == 0
    assert stats["dropped"] == 1 and stats["ok"] is False  # the malformed row is counted, not hidden
    writer.close()


def test_an_outage_longer_than_the_buffer_drops_the_oldest_rows_and_counts_them(tmp_path, monkeypatch):
    monkeypatch.setattr(prediction_log_module, "RETRY_SECONDS", 0.05)
    folder = tmp_path / "gone"
    engine = create_engine(f"sqlite:///{folder / 'log.db'}")
    writer = PredictionLogWriter(engine, maxsize=3, linger=0)
    for i in range(5):
        writer.record(_row(i))
        writer.flush()
    assert writer.stats()["waiting_for_database"] == 3 and writer.stats()["dropped"] == 2
    folder.mkdir()
    writer.record(_row(9))
    writer.flush()
    deadline = time.monotonic() + 10
    while writer.stats()["written"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    seconds = sorted(int((pd.Timestamp(r["prediction_time"], tz="UTC") - NOW).total_seconds()) for r in rows(engine))
    assert seconds == [3, 4, 9][-len(seconds):] and writer.stats()["dropped"] == 3
    writer.close()


def test_rows_arriving_together_share_one_transaction(store):
    """The writer lingers after a batch's first row, so a burst is one INSERT, not one per row."""
    from sqlalchemy import event

    inserts = []
    event.listen(store.engine, "before_cursor_execute", lambda conn, cursor, statement, params, context, many:
                 inserts.append(len(params) if many else 1) if statement.startswith("INSERT INTO prediction_log")
                 else None)
    writer = PredictionLogWriter(store.engine, linger=2.0)
    row = {"asset": "bitcoin", "timeframe": "1h", "model_version": "v1", "kind": "linear",
           "client_ab_group": "production", "prediction_time": "2021-09-30T00:00:30Z",
           "data_as_of": NOW, "target_time": NOW + pd.Timedelta(hours=1), "current_price": 1.0, "predicted_price": 1.0}
    for _ in range(10):  # spaced out as requests are: without the linger each row is its own INSERT
        assert writer.record(row)
        time.sleep(0.02)
    started = time.monotonic()
    assert writer.flush(timeout=1.5)
    assert time.monotonic() - started < 1.0  # a flush ends the linger rather than waiting it out
    assert writer.stats()["written"] == 10 and count(store.engine) == 10
    assert inserts == [10]
    stored = rows(store.engine)[0]
    assert iso(stored["prediction_time"]) == "2021-09-30T00:00:30Z"
    assert iso(stored["target_time"]) == "2021-09-30T01:00:30Z"
    writer.close()
