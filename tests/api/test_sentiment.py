"""The Fear & Greed Index in the API (/api/v1/sentiment, analysis) and in a bundle trained with it.

A copy of the API tests' store gets the shared index file; the session's own store has none,
which is how "nothing stored" is checked.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete

from crypto_predictor.api.schemas import Analysis, Sentiment
from crypto_predictor.config import TestConfig
from crypto_predictor.datasets import build_dataset
from crypto_predictor.market import fear_greed
from crypto_predictor.market.sentiment import SentimentStore, ingest_sentiment
from crypto_predictor.market.store import CandleStore
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.serving.service import PredictionService
from crypto_predictor.sentiment_features import SENTIMENT_FEATURES, sentiment_features
from crypto_predictor.storage.tables import sentiment as sentiment_table
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.api.conftest import ASSETS, FRESH_NOW


def copy_store(url: str, dest) -> str:
    """A copy of a SQLite store (WAL included: sqlite's backup API), as a URL."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    return f"sqlite:///{dest}"


@pytest.fixture(scope="module")
def with_index(quick_bundle, tmp_path_factory, fear_greed_csv):
    """(database URL, models dir) of a store copy holding the index and a quick bundle trained with it."""
    root = tmp_path_factory.mktemp("sentiment_api")
    url = copy_store(quick_bundle.database_url, root / "store.db")
    store = CandleStore(url)
    store.init_schema()  # as every command does: the copied store predates the sentiment table
    ingest_sentiment(fear_greed.read_csv(fear_greed_csv), SentimentStore(store.engine))
    models = root / "models"
    version, results = train_run(url, list(ASSETS), ["24h"], TrainOptions(kinds=("linear",), quick=True,
                                                                          sentiment=True), models, n_jobs=1)
    set_alias(models, "production", version)
    return url, str(models), results


@pytest.fixture()
def client(make_app, with_index):
    url, models, _ = with_index
    return make_app(DATABASE_URL=url, MODELS_DIR=models).test_client()


def test_the_series_ends_at_the_newest_stored_day(client):
    answer = client.get("/api/v1/sentiment?days=7")
    assert answer.status_code == 200, answer.get_json()
    body = Sentiment.model_validate(answer.get_json()).data
    assert [d.date for d in body.series] == [f"2023-12-{d}" for d in range(25, 32)]
    assert body.current.date == "2023-12-31" and body.current.value == 67 and body.current.classification == "Greed"
    assert body.current.published_at == "2024-01-01T00:00:00+00:00" and body.missing_days == 0
    hole = client.get("/api/v1/sentiment?days=2100").get_json()["data"]
    assert hole["missing_days"] == 3 and len(hole["series"]) == 2097 and hole["series"][0]["date"] == "2018-04-02"


@pytest.mark.parametrize("query, fragment", [("days=0", "days"), ("days=abc", "days"), ("days=4000", "days")])
def test_bad_days_are_a_422_naming_the_field(client, query, fragment):
    answer = client.get(f"/api/v1/sentiment?{query}")
    assert answer.status_code == 422
    assert fragment in answer.get_json()["error"]["message"]


def test_analysis_shows_the_index_as_known_when_its_data_ends(client):
    body = client.get("/api/v1/analysis/bitcoin?days=5").get_json()
    Analysis.model_validate(body)
    fg = body["data"]["sentiment"]
    assert body["data"]["data_as_of"] == "2021-10-01T00:00:00+00:00"
    # 30 September's value counts as published at 00:00 on 1 October: exactly data_as_of.
    assert fg["current"]["date"] == "2021-09-30" and fg["current"]["published_at"] <= body["data"]["data_as_of"]
    assert [d["date"] for d in fg["series"]] == [f"2021-09-{d}" for d in range(26, 31)]


def test_without_any_index_values_analysis_says_null_and_the_endpoint_404s(make_app):
    client = make_app().test_client()  # the session store: no index ingested
    assert client.get("/api/v1/analysis/bitcoin?days=5").get_json()["data"]["sentiment"] is None
    answer = client.get("/api/v1/sentiment")
    assert answer.status_code == 404
    assert "run ingest --source fear-greed" in answer.get_json()["error"]["message"]


def test_a_bundle_trained_with_the_index_serves_the_features_training_computed(make_app, with_index):
    url, models, results = with_index
    assert all(set(SENTIMENT_FEATURES) <= set(r.features) for r in results)
    service = PredictionService(TestConfig(DATABASE_URL=url, MODELS_DIR=models), clock=lambda: FRESH_NOW)
    answer = make_app(service=service).test_client().post("/api/v1/predict",
                                                          json={"symbol": "bitcoin", "timeframe": "24h"})
    assert answer.status_code == 200, answer.get_json()
    served = service.snapshot()
    pair = served.bundles[served.aliases["production"]].pair("bitcoin", "24h")
    assert pair.sentiment
    inputs, _, _ = service.data.pair_inputs(pair, service.data.latest(["bitcoin", *pair.context]))
    newest = inputs.bar_time
    assert newest == pd.Timestamp("2021-09-30T23:00Z")
    values = SentimentStore(CandleStore(url).engine).load()
    expected = sentiment_features(pd.DatetimeIndex([newest]), pd.Timedelta("1h"), values)
    row = inputs.X_tail.iloc[-1]
    for name in SENTIMENT_FEATURES:
        assert row[name] == expected[name][0], name
    assert row["fg_level"] == values[pd.Timestamp("2021-09-29", tz="UTC")] / 100  # 30 Sept has not ended
    # the training rows carried the same function: the last training row's sentiment columns
    ds = build_dataset(CandleStore(url), "bitcoin", "24h", sentiment=values)
    last = ds.X.index[-1]
    assert ds.X.loc[last, "fg_level"] == sentiment_features(pd.DatetimeIndex([last]), pd.Timedelta("1h"),
                                                            values)["fg_level"][0]


def test_a_missing_index_never_blocks_a_prediction(make_app, with_index, tmp_path):
    url, models, _ = with_index
    copy = copy_store(url, tmp_path / "no_index.db")
    with CandleStore(copy).engine.begin() as conn:
        conn.execute(delete(sentiment_table))
    answer = make_app(DATABASE_URL=copy, MODELS_DIR=models).test_client().post(
        "/api/v1/predict", json={"symbol": "ethereum", "timeframe": "24h"})
    assert answer.status_code == 200, answer.get_json()
    assert np.isfinite(answer.get_json()["data"]["predicted_price"])


def test_a_retrain_of_a_production_trained_with_the_index_keeps_it(with_index, quick_bundle):
    from crypto_predictor.jobs.retrain import plan

    _, models, _ = with_index
    assert plan(models, "v1").sentiment
    assert not plan(quick_bundle.models_dir, quick_bundle.production).sentiment


def test_the_series_is_conditional_until_the_next_value_is_published(client):
    first = client.get("/api/v1/sentiment?days=7")
    newest = pd.Timestamp(first.get_json()["data"]["current"]["date"], tz="UTC")
    until = (newest + pd.Timedelta(days=2) - pd.Timestamp(FRESH_NOW, unit="s", tz="UTC")).total_seconds()
    assert first.cache_control.max_age == (min(86400, int(until)) if until > 0 else 60)
    again = client.get("/api/v1/sentiment?days=7", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert client.get("/api/v1/sentiment?days=8", headers={"If-None-Match": first.headers["ETag"]}).status_code == 200
