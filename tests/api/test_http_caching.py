"""ETag / Cache-Control / 304 for the app's polling: GET /predict, analysis and sentiment."""

from __future__ import annotations

import pytest

from tests.api.conftest import FRESH_NOW

# The newest candle opened 2021-09-30T23:00Z; FRESH_NOW is 00:05, the next candle closes at 01:00.
UNTIL_NEXT_CLOSE = 55 * 60


def _counting(service, monkeypatch) -> list:
    calls = []
    original = service.predict

    def predict(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "predict", predict)
    return calls


@pytest.fixture()
def fresh(make_app):
    app = make_app()
    return app, app.test_client(), app.extensions["prediction_service"].service


def test_get_predict_answers_as_post_does_with_validators(fresh):
    _, client, _ = fresh
    got = client.get("/api/v1/predict?symbol=BTC&timeframe=1h")
    posted = client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"})
    assert got.status_code == 200 and got.get_json()["data"] == posted.get_json()["data"]
    assert got.headers["ETag"].startswith('"') and len(got.headers["ETag"]) == 34
    assert got.cache_control.private and got.cache_control.max_age == UNTIL_NEXT_CLOSE
    assert "X-Client-Id" in got.headers["Vary"]
    assert "ETag" not in posted.headers  # POST stays uncached by HTTP (a conditional POST would be a 412)


def test_a_matching_etag_is_a_304_without_predicting_again(fresh, monkeypatch):
    _, client, service = fresh
    first = client.get("/api/v1/predict?symbol=bitcoin&timeframe=24h")
    calls = _counting(service, monkeypatch)
    for held in (first.headers["ETag"], f'W/{first.headers["ETag"]}', f'"other", {first.headers["ETag"]}', "*"):
        again = client.get("/api/v1/predict?symbol=bitcoin&timeframe=24h", headers={"If-None-Match": held})
        assert again.status_code == 304 and again.data == b"", held
        assert again.headers["ETag"] == first.headers["ETag"]
        assert again.cache_control.max_age == UNTIL_NEXT_CLOSE
    assert calls == []
    other = client.get("/api/v1/predict?symbol=bitcoin&timeframe=24h", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200 and other.get_json()["data"]["symbol"] == "bitcoin"


def test_the_etag_names_what_the_answer_is_made_of(fresh):
    _, client, _ = fresh
    tags = {client.get(f"/api/v1/predict?symbol=bitcoin&{q}").headers["ETag"]
            for q in ("timeframe=1h", "timeframe=24h", "timeframe=1h&model_version=challenger")}
    assert len(tags) == 3
    assert client.get("/api/v1/predict?symbol=BTCUSDT&timeframe=1h").headers["ETag"] in tags  # the same asset


def test_bad_parameters_are_4xx_json_not_304(fresh):
    _, client, _ = fresh
    unknown = client.get("/api/v1/predict?symbol=NOPE&timeframe=1h", headers={"If-None-Match": "*"})
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "unknown_symbol"
    assert client.get("/api/v1/predict?timeframe=1h").status_code == 422
    bad = client.get("/api/v1/predict?symbol=BTC&timeframe=2h")
    assert bad.status_code == 400 and "1h" in bad.get_json()["error"]["message"]


def test_a_store_behind_by_a_candle_is_polled_again_within_a_minute(make_app):
    late = make_app(clock=lambda: FRESH_NOW + 2 * 3600, MAX_DATA_AGE_HOURS=0).test_client()
    answer = late.get("/api/v1/predict?symbol=BTC&timeframe=1h")
    assert answer.status_code == 200 and answer.cache_control.max_age == 60


def test_analysis_is_conditional_and_public(fresh):
    _, client, _ = fresh
    first = client.get("/api/v1/analysis/bitcoin?days=5&interval=4h")
    assert first.status_code == 200 and first.cache_control.public, first.get_data(as_text=True)
    assert first.cache_control.max_age == UNTIL_NEXT_CLOSE
    again = client.get("/api/v1/analysis/bitcoin?days=5&interval=4h", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    other = client.get("/api/v1/analysis/bitcoin?days=6&interval=4h", headers={"If-None-Match": first.headers["ETag"]})
    assert other.status_code == 200 and other.headers["ETag"] != first.headers["ETag"]


def test_the_openapi_document_describes_the_validators(fresh):
    _, client, _ = fresh
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, method in (("/api/v1/predict", "get"), ("/api/v1/analysis/{symbol}", "get"),
                         ("/api/v1/sentiment", "get"), ("/api/v1/models/performance/{model_version}", "get")):
        responses = paths[path][method]["responses"]
        assert "304" in responses and "ETag" in responses["200"]["headers"], path
        assert "If-None-Match" in [p["name"] for p in paths[path][method]["parameters"]]
    assert "304" not in paths["/api/v1/predict"]["post"]["responses"]


def test_performance_is_conditional_until_a_prediction_is_realised(make_app, quick_bundle, monkeypatch, tmp_path):
    import sqlite3

    from sqlalchemy import update

    from crypto_predictor.storage.tables import prediction_log

    own = tmp_path / "store.db"  # its own log: the rows realised here must not reach other tests
    with sqlite3.connect(quick_bundle.database_url.removeprefix("sqlite:///")) as source, sqlite3.connect(own) as copy:
        source.backup(copy)
    app = make_app(DATABASE_URL=f"sqlite:///{own}")
    client, service = app.test_client(), app.extensions["prediction_service"].service
    client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"})
    service.log.flush(timeout=5)
    first = client.get("/api/v1/models/performance/production")
    assert first.status_code == 200 and first.cache_control.public, first.get_data(as_text=True)
    assert first.cache_control.max_age == UNTIL_NEXT_CLOSE
    calls = []
    original = service.performance
    monkeypatch.setattr(service, "performance", lambda v, source=None: calls.append(v) or original(v, source))
    same = client.get("/api/v1/models/performance/production", headers={"If-None-Match": first.headers["ETag"]})
    assert same.status_code == 304 and calls == []  # decided before the report is built
    with service.store.engine.begin() as conn:  # the verify job realises the logged prediction
        conn.execute(update(prediction_log).values(realised_price=prediction_log.c.current_price * 1.01,
                                                   realised_at=prediction_log.c.target_time))
    moved = client.get("/api/v1/models/performance/production", headers={"If-None-Match": first.headers["ETag"]})
    assert moved.status_code == 200 and moved.headers["ETag"] != first.headers["ETag"] and calls == ["production"]
    assert moved.get_json()["data"]["live"][0]["n"] >= 1
    assert client.get("/api/v1/models/performance/v999").status_code == 404


def test_performance_of_an_unserved_version_reads_its_manifest_once(make_app, quick_bundle, tmp_path, monkeypatch):
    import shutil

    from crypto_predictor.registry.aliases import set_alias

    models = tmp_path / "models"
    shutil.copytree(quick_bundle.models_dir, models)
    set_alias(models, "challenger", quick_bundle.production)  # the challenger's version is served no more
    app = make_app(MODELS_DIR=str(models))
    client, service = app.test_client(), app.extensions["prediction_service"].service
    reads = []
    original = service.model_store.load_manifest
    monkeypatch.setattr(service.model_store, "load_manifest", lambda v: reads.append(v) or original(v))
    first = client.get(f"/api/v1/models/performance/{quick_bundle.challenger}")
    assert first.status_code == 200 and first.get_json()["data"]["version"] == quick_bundle.challenger
    assert reads == [quick_bundle.challenger]  # the ETag's read builds the body too
    same = client.get(f"/api/v1/models/performance/{quick_bundle.challenger}",
                      headers={"If-None-Match": first.headers["ETag"]})
    assert same.status_code == 304 and len(reads) == 2
    reads.clear()
    assert client.get("/api/v1/models/performance/production").status_code == 200 and reads == []  # loaded
