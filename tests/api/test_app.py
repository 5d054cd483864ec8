"""The factory: lazy per-process service start, serving settings from the environment."""

from __future__ import annotations

import pytest

from crypto_predictor.api import create_app, runtime
from crypto_predictor.config import Config, TestConfig
from crypto_predictor.errors import BundleIntegrityError
from crypto_predictor.serving.service import PredictionService


class CountingService(PredictionService):
    """The real service, counting its starts."""

    starts = 0

    def start(self):
        type(self).starts += 1
        super().start()


def test_service_starts_lazily_once_per_process(quick_bundle, monkeypatch):
    config = TestConfig(DATABASE_URL=quick_bundle.database_url, MODELS_DIR=quick_bundle.models_dir)
    app = create_app(config, service=CountingService(config))
    assert CountingService.starts == 0  # building the app (in the Gunicorn master) loads no model
    client = app.test_client()
    for _ in range(3):
        assert client.post("/api/v1/predict", json={"symbol": "bitcoin"}).status_code == 200
    assert CountingService.starts == 1
    monkeypatch.setattr(runtime.os, "getpid", lambda: -12345)  # as if this were a freshly forked worker
    assert client.get("/api/v1/models").status_code == 200
    assert CountingService.starts == 2


def test_default_app_builds_a_prediction_service(tmp_path):
    app = create_app(TestConfig(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", MODELS_DIR=str(tmp_path)))
    holder = app.extensions["prediction_service"]
    assert isinstance(holder.service, PredictionService) and not holder.started
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024


def test_serving_settings_from_the_environment():
    default = Config({})
    assert default.CACHE_ENABLED and default.CACHE_TYPE == "SimpleCache"
    assert default.RATELIMIT_ENABLED and default.RATELIMIT_DEFAULT == "600 per minute"
    assert default.RATELIMIT_STORAGE_URI == "memory://"
    env = Config({"CACHE_REDIS_URL": "redis://cache:6379/0", "CACHE_ENABLED": "0", "RATELIMIT_ENABLED": "false",
                  "RATELIMIT_DEFAULT": "10 per second", "RATELIMIT_STORAGE_URI": "redis://cache:6379/1"})
    assert env.CACHE_TYPE == "RedisCache" and not env.CACHE_ENABLED
    assert not env.RATELIMIT_ENABLED and env.RATELIMIT_DEFAULT == "10 per second"
    assert not TestConfig().RATELIMIT_ENABLED  # tests are not throttled unless they ask


def test_cache_backend_failure_degrades_to_uncached(make_app, monkeypatch):
    from crypto_predictor.api.extensions import cache

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    client = make_app().test_client()
    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "set", down)
    for _ in range(2):
        response = client.post("/api/v1/predict", json={"symbol": "bitcoin"})
        assert response.status_code == 200 and response.get_json()["metadata"]["cache_hit"] is False


@pytest.mark.parametrize("exc, code", [
    (RuntimeError("secret internals"), "internal_error"),
    (BundleIntegrityError("sha256 mismatch in /srv/secret/models/v1/x.pkl"), "bundle_integrity"),
])
def test_faults_are_json_500_without_internals(quick_bundle, exc, code):
    class Broken(PredictionService):
        def predict(self, *args, **kwargs):
            raise exc

    config = TestConfig(DATABASE_URL=quick_bundle.database_url, MODELS_DIR=quick_bundle.models_dir, CACHE_ENABLED=False)
    response = create_app(config, service=Broken(config)).test_client().post("/api/v1/predict",
                                                                             json={"symbol": "bitcoin"})
    assert response.status_code == 500
    assert response.get_json() == {"status": "error", "error": {"code": code, "message": "internal server error"}}
