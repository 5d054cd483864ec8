"""GET /api/health: 200 with the served version and checks; 503 (error shape + checks) when not ready.
GET /api/health/live: 200 whenever the process answers, ready or not."""

import pytest

from crypto_predictor.api import create_app
from crypto_predictor.config import TestConfig
from tests.api.conftest import FRESH_NOW
from tests.api.helpers import assert_error


def test_healthy_reports_version_checks_and_data_age(make_app, quick_bundle):
    response = make_app().test_client().get("/api/health")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok" and body["ok"] is True
    assert body["model_version"] == quick_bundle.production
    checks = body["checks"]
    assert checks["model"]["ok"] and checks["database"]["ok"] and checks["data"]["ok"]
    # 5 minutes after the newest candle closed
    assert checks["data"]["age_hours"] == pytest.approx((FRESH_NOW - quick_bundle.newest.timestamp()) / 3600 - 1,
                                                        abs=0.01)


def test_503_without_a_model(make_app, tmp_path):
    client = make_app(MODELS_DIR=str(tmp_path / "empty")).test_client()
    response = client.get("/api/health")
    error = assert_error(response, 503, "unavailable")
    body = response.get_json()
    assert "model" in error["message"] and body["checks"]["model"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True and body["model_version"] is None
    # and predictions say why instead of failing obscurely
    assert_error(client.post("/api/v1/predict", json={"symbol": "bitcoin"}), 503, "model_unavailable")


def test_503_when_the_store_is_unreachable(make_app, tmp_path):
    # a directory where the SQLite file should be: every connection fails
    client = make_app(DATABASE_URL=f"sqlite:///{tmp_path}").test_client()
    response = client.get("/api/health")
    assert_error(response, 503, "unavailable")
    assert response.get_json()["checks"]["database"]["ok"] is False
    error = assert_error(client.get("/api/v1/analysis/bitcoin"), 503, "store_unavailable")
    assert "Traceback" not in error["message"]


def test_live_answers_while_not_ready(make_app, tmp_path):
    """Not ready (no model, store unreachable) is still alive: liveness must not get it restarted."""
    for client in (make_app(MODELS_DIR=str(tmp_path / "empty")).test_client(),
                   make_app(DATABASE_URL=f"sqlite:///{tmp_path}").test_client()):
        assert client.get("/api/health").status_code == 503
        response = client.get("/api/health/live")
        assert response.status_code == 200
        body = response.get_json()
        assert body["status"] == "ok" and body["pid"] > 0 and body["uptime_seconds"] >= 0


def test_live_does_not_start_the_service(make_app):
    """A worker still loading (or failing to load) its bundle answers liveness without waiting on it."""
    app = make_app()
    holder = app.extensions["prediction_service"]
    assert not holder.started
    assert app.test_client().get("/api/health/live").status_code == 200
    assert not holder.started


def test_unknown_route_is_a_json_404(tmp_path):
    app = create_app(TestConfig(DATABASE_URL=f"sqlite:///{tmp_path / 'h.db'}", MODELS_DIR=str(tmp_path)))
    response = app.test_client().get("/nope")
    assert_error(response, 404, "not_found")
