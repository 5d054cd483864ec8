from crypto_predictor.api import create_app
from crypto_predictor.config import TestConfig
from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.market.ingest import ingest_asset


def test_health_reports_store_and_data_and_503_without_a_model(tmp_path, data_dir):
    app = create_app(TestConfig(DATABASE_URL=f"sqlite:///{tmp_path / 'h.db'}"))
    store = app.extensions["candle_store"]
    store.init_schema()
    ingest_asset(CsvSource(data_dir), store, "bitcoin", last_days=3)
    response = app.test_client().get("/api/health")
    body = response.get_json()
    assert response.status_code == 503  # no model can be served yet
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["data"]["latest_bitcoin_candle"].startswith("2021-09-30T23:00")
    assert body["checks"]["model"]["ok"] is False


def test_unknown_route_is_a_json_404(tmp_path):
    app = create_app(TestConfig(DATABASE_URL=f"sqlite:///{tmp_path / 'h.db'}"))
    response = app.test_client().get("/nope")
    assert response.status_code == 404
    assert response.get_json()["status"] == "error"
    assert response.get_json()["error"]["code"] == "not_found"
