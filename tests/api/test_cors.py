"""CORS: off by default; with CORS_ORIGINS only the listed origins get headers, on /api/* only."""

from __future__ import annotations

import pytest

from crypto_predictor.config import Config

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example.net"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "Content-Type, X-Client-Id"}


@pytest.fixture(scope="module")
def cors_client(make_app):
    return make_app(CORS_ORIGINS=[APP_ORIGIN]).test_client()


def test_origins_are_read_from_a_comma_separated_list():
    config = Config({"CORS_ORIGINS": f" {APP_ORIGIN} ,,https://web.example.org"})
    assert config.CORS_ORIGINS == [APP_ORIGIN, "https://web.example.org"]
    assert Config({}).CORS_ORIGINS == []


def test_no_cors_headers_by_default(client):
    response = client.get("/api/v1/symbols", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options("/api/v1/predict", headers={"Origin": APP_ORIGIN, **PREFLIGHT})
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers.keys())


def test_a_listed_origin_gets_cors_headers(cors_client):
    response = cors_client.get("/api/v1/symbols", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Origin" in response.headers.get("Vary", "")  # shared caches must key on it
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_preflight_for_a_listed_origin(cors_client):
    response = cors_client.options("/api/v1/predict", headers={"Origin": APP_ORIGIN, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-client-id"} <= allowed
    assert response.headers["Access-Control-Max-Age"] == "600"
    # and the real request that follows it works
    real = cors_client.post("/api/v1/predict", json={"symbol": "bitcoin"}, headers={"Origin": APP_ORIGIN})
    assert real.status_code == 200 and real.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_an_unlisted_origin_gets_none(cors_client):
    for response in (cors_client.get("/api/v1/symbols", headers={"Origin": OTHER_ORIGIN}),
                     cors_client.options("/api/v1/predict", headers={"Origin": OTHER_ORIGIN, **PREFLIGHT})):
        assert "Access-Control-Allow-Origin" not in response.headers


def test_errors_carry_cors_headers_so_the_web_app_can_read_them(cors_client):
    response = cors_client.post("/api/v1/predict", json={"symbol": "nope"}, headers={"Origin": APP_ORIGIN})
    assert response.status_code == 404
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_only_api_paths_get_cors(cors_client):
    response = cors_client.get("/metrics", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
