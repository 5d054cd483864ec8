"""The prediction log on a real PostgreSQL server, side by side with SQLite.

The same logged predictions (made "at" real candles of the shared data, with duplicates as
several workers produce them) go through the writer, ``verify`` and the read side on both
databases; PostgreSQL must give what SQLite gives, and both what the rows say.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from crypto_predictor.serving.live_metrics import count, history, live_accuracy
from crypto_predictor.serving.prediction_log import PredictionLogWriter, verify
from crypto_predictor.storage.tables import prediction_log
from crypto_predictor.timeutil import iso, utc
from crypto_predictor.market.store import CandleStore
from tests.support.slices import fill_store

ASSETS = ("bitcoin", "ethereum")
CUT = pd.Timestamp("2021-09-28T23:00Z")  # newest stored candle when the predictions are made
HORIZON = {"1h": pd.Timedelta(hours=1), "24h": pd.Timedelta(hours=24)}


def make_rows(store) -> list[dict]:
    """Predictions at each of the 12 hours up to CUT, per asset, timeframe and two versions."""
    rng = np.random.default_rng(7)
    rows = []
    for asset in ASSETS:
        closes = store.load(asset, "1h", CUT - pd.Timedelta(hours=11), CUT)["close"]
        assert len(closes) == 12
        for as_of, price in closes.items():
            for timeframe, horizon in HORIZON.items():
                for version in ("v1", "v2"):
                    move = float(rng.normal(0, 0.01))
                    row = {"asset": asset, "timeframe": timeframe, "model_version": version, "kind": "linear",
                           "client_ab_group": "production", "prediction_time": as_of + pd.Timedelta(minutes=61),
                           "data_as_of": as_of, "target_time": as_of + pd.Timedelta(hours=1) + horizon,
                           "current_price": price, "predicted_price": price * (1 + move),
                           "confidence": round(0.5 + abs(move) * 5, 4)}
                    if as_of.hour % 4:  # some rows carry no intervals
                        row.update(lower80=price * 0.995, upper80=price * 1.005, lower95=price * 0.985,
                                   upper95=price * 1.015)
                    rows.append(row)
                    if as_of.hour % 3 == 0:  # served again by another worker: logged twice, counted once
                        rows.append(dict(row, prediction_time=row["prediction_time"] + pd.Timedelta(seconds=5),
                                         predicted_price=row["predicted_price"] * 1.01))
    return rows


@pytest.fixture()
def stores(postgres_url, tmp_path, data_dir):
    """{"postgresql": store, "sqlite": store}, both holding candles up to CUT and the same logged rows."""
    out = {}
    for name, url in (("postgresql", postgres_url), ("sqlite", f"sqlite:///{tmp_path / 'log.db'}")):
        store = CandleStore(url)
        assert "prediction_log" in store.init_schema()
        fill_store(store, data_dir, ASSETS, start="2021-09-20", end=CUT)
        out[name] = store
    rows = make_rows(out["sqlite"])
    for store in out.values():
        writer = PredictionLogWriter(store.engine, batch_size=50)
        assert all(writer.record(row) for row in rows)
        assert writer.flush()
        assert writer.stats()["written"] == len(rows) and writer.stats()["failed_writes"] == 0 and writer.stats()["ok"]
        writer.close()
    return out


def logged(store) -> list[dict]:
    t = prediction_log
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.id)).mappings()]


def same(a, b):
    """Equal structures, floats to 1e-9 relative (the two databases may sum in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def test_writer_verify_and_reads_match_sqlite(stores, data_dir):
    pg, lite = stores["postgresql"], stores["sqlite"]
    rows_pg, rows_lite = logged(pg), logged(lite)
    assert len(rows_pg) == len(rows_lite) == count(pg.engine) > 100
    for a, b in zip(rows_pg, rows_lite):
        assert utc(a["target_time"]) == utc(b["target_time"])  # aware on PG, naive UTC on SQLite
        assert (a["asset"], a["predicted_price"], a["lower95"]) == (b["asset"], b["predicted_price"], b["lower95"])

    # Only 1h predictions made at CUT - 1h or earlier have their target candle already.
    first = {name: verify(store) for name, store in stores.items()}
    assert first["postgresql"] == first["sqlite"] > 0
    for store in stores.values():
        fill_store(store, data_dir, ASSETS, start=CUT, end="2021-09-30T23:00Z")
    second = {name: verify(store) for name, store in stores.items()}
    assert second["postgresql"] == second["sqlite"] == len(rows_pg) - first["sqlite"]
    assert verify(pg) == 0

    closes = pg.load("bitcoin", "1h", CUT - pd.Timedelta(hours=12))["close"]
    for row in logged(pg):
        assert row["realised_price"] is not None
        if row["asset"] == "bitcoin":  # the close of the candle that closes at the target time
            assert row["realised_price"] == closes[utc(row["target_time"]) - pd.Timedelta(hours=1)]
            assert utc(row["realised_at"]) == utc(row["target_time"])
    assert same([iso(r["realised_at"]) for r in logged(pg)], [iso(r["realised_at"]) for r in logged(lite)])

    for query in ({}, {"by": ()}, {"by": ("asset",)}, {"version": "v2", "timeframe": "24h"},
                  {"asset": "ethereum", "by": ("model_version", "timeframe")}):
        on_pg, on_lite = live_accuracy(pg.engine, **query), live_accuracy(lite.engine, **query)
        assert on_pg and same(on_pg, on_lite), (query, on_pg, on_lite)
        json.dumps(on_pg)  # plain numbers, no Decimal
    for asset in ASSETS:
        for kwargs in ({}, {"limit": 7}, {"timeframe": "1h", "limit": 100}):
            on_pg, on_lite = history(pg.engine, asset, **kwargs), history(lite.engine, asset, **kwargs)
            assert on_pg and same(on_pg, on_lite), (asset, kwargs)
            json.dumps(on_pg)


def test_live_accuracy_counts_each_prediction_once(stores, data_dir):
    pg = stores["postgresql"]
    fill_store(pg, data_dir, ASSETS, start=CUT, end="2021-09-30T23:00Z")
    verify(pg)
    frame = pd.DataFrame(logged(pg))
    firsts = frame.sort_values("id").drop_duplicates(["model_version", "asset", "timeframe", "data_as_of"])
    real, pred = firsts["realised_price"] - firsts["current_price"], firsts["predicted_price"] - firsts["current_price"]
    firsts = firsts.assign(hit=np.where(real * pred > 0, 1.0, 0.0))
    for row in live_accuracy(pg.engine):
        group = firsts[(firsts["model_version"] == row["model_version"]) & (firsts["asset"] == row["asset"])
                       & (firsts["timeframe"] == row["timeframe"])]
        assert row["n"] == len(group) == 12
        assert row["directional_accuracy"] == pytest.approx(group["hit"].mean(), abs=1e-6)
        assert row["first_target"] == iso(group["target_time"].min())
    rows = history(pg.engine, "bitcoin", limit=1000)
    assert len(rows) == len(firsts[firsts["asset"] == "bitcoin"]) == 48
    assert [h["prediction_time"] for h in rows] == sorted((h["prediction_time"] for h in rows), reverse=True)
