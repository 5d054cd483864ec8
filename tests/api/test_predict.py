"""POST /api/v1/predict and /predict/batch against the real service and a real quick bundle."""

from __future__ import annotations

import io
import math

import pytest
from flask import jsonify

from crypto_predictor.config import TestConfig
from crypto_predictor.errors import MarketDataUnavailable
from crypto_predictor.serving.service import PredictionService
from crypto_predictor.symbols import core_ids, supported_ids
from tests.api.conftest import FRESH_NOW
from tests.api.helpers import assert_error

DATA_KEYS = {"symbol", "current_price", "predicted_price", "confidence", "change_percentage", "timeframe",
             "prediction_time", "model_version", "target_time", "direction", "interval", "data_as_of", "stale",
             "model_accuracy", "skill", "volatility"}


def assert_skill(data, quick_bundle):
    """``skill``: the served forecast's walk-forward row of the manifest, as the app sees it."""
    from crypto_predictor.registry.bundle import load_manifest

    rows = load_manifest(f"{quick_bundle.models_dir}/{data['model_version']}")["metrics"]["overall"][
        data["symbol"]][data["timeframe"]]
    row, baseline = rows["served"], rows["baseline_quantile"]
    skill = data["skill"]
    assert set(skill) == {"mase", "beats_naive", "direction_accuracy", "n", "coverage_80", "coverage_95",
                          "interval_score_ratio_80", "interval_score_ratio_95"}
    assert skill["mase"] == pytest.approx(row["mase"], abs=1e-6) and skill["n"] == row["n"] > 0
    assert skill["beats_naive"] is (row["mase"] < 1.0)
    assert skill["direction_accuracy"] == pytest.approx(row["directional_accuracy"], abs=1e-6)
    for key in ("80", "95"):  # what the intervals did walk-forward, against the simple quantile baseline
        assert skill[f"coverage_{key}"] == pytest.approx(row[f"coverage_{key}"], abs=1e-6)
        assert 0 < skill[f"coverage_{key}"] <= 1
        ratio = row[f"interval_score_{key}"] / baseline[f"interval_score_{key}"]
        assert skill[f"interval_score_ratio_{key}"] == pytest.approx(ratio, abs=1e-6) and ratio > 0


def _predict(client, body, **kw):
    return client.post("/api/v1/predict", json=body, **kw)


def test_1h_intervals_scale_with_a_range_har_volatility_and_an_unstable_24h_fit_keeps_the_ewma(client, quick_bundle):
    from pathlib import Path

    from crypto_predictor.datasets import bars
    from crypto_predictor.market.store import CandleStore
    from crypto_predictor.registry.artifacts import read_pair
    from crypto_predictor.registry.catalog import open_bundle

    bundle = open_bundle(Path(quick_bundle.models_dir), quick_bundle.production)
    conformal = read_pair(bundle, "bitcoin", "1h").served().conformal
    assert conformal.har is not None and conformal.scale_power == 1.0 and conformal.window == 2000
    # fitted on the first 45 of 90 days: too few rows for the lags and the season, enough for the rest
    assert (conformal.har.measure, conformal.har.lags, conformal.har.season) == ("range", (), False)
    # at 24h those 45 days fit a negative persistence, refused: the EWMA scale instead
    daily = read_pair(bundle, "bitcoin", "24h").served().conformal
    assert daily.har is None and daily.vol_span == 72
    data = _predict(client, {"symbol": "bitcoin", "timeframe": "1h"}).get_json()["data"]
    candles = bars(CandleStore(quick_bundle.database_url).load("bitcoin"), "1h")  # gaps filled, as served
    assert data["volatility"] == pytest.approx(float(conformal.har.scale(candles)[-1]), rel=1e-3)  # 400 bars served


def test_prediction_shape_and_values(client, quick_bundle):
    response = _predict(client, {"symbol": "bitcoin", "timeframe": "24h"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "success"
    data = body["data"]
    assert DATA_KEYS <= set(data)
    assert data["symbol"] == "bitcoin" and data["timeframe"] == "24h"
    assert data["model_version"] == quick_bundle.production  # default: the production alias
    assert data["current_price"] == pytest.approx(43824.1)  # close of the newest stored candle
    assert math.isfinite(data["predicted_price"]) and 0 <= data["confidence"] <= 1
    assert data["change_percentage"] == pytest.approx(
        (data["predicted_price"] / data["current_price"] - 1) * 100, rel=1e-3, abs=1e-3)
    lo80, hi80 = data["interval"]["80"]
    lo95, hi95 = data["interval"]["95"]
    assert lo95 <= lo80 <= data["predicted_price"] <= hi80 <= hi95
    # the forecast SD of the 24h log return scales the intervals: the 80% band spans a few of them
    assert 0 < data["volatility"] < 0.5
    assert 0.5 < math.log(hi80 / lo80) / data["volatility"] < 5
    assert_skill(data, quick_bundle)
    meta = body["metadata"]
    assert set(meta) == {"processing_time", "cache_hit", "model_accuracy"}
    assert meta["processing_time"] >= 0 and meta["model_accuracy"] == data["model_accuracy"]


def test_defaults_aliases_and_spellings(client, quick_bundle):
    default = _predict(client, {"symbol": "BTC"}).get_json()["data"]
    assert default["timeframe"] == "24h" and default["symbol"] == "bitcoin"
    assert _predict(client, {"symbol": "ETHUSDT", "timeframe": "1H"}).get_json()["data"]["symbol"] == "ethereum"
    for requested, served in (("challenger", quick_bundle.challenger), (quick_bundle.production,
                                                                         quick_bundle.production)):
        data = _predict(client, {"symbol": "bitcoin", "model_version": requested}).get_json()["data"]
        assert data["model_version"] == served
    # unknown fields are ignored
    assert _predict(client, {"symbol": "bitcoin", "extra": [1, 2], "debug": True}).status_code == 200


def test_cache_hit_is_truthful(make_app):
    client = make_app().test_client()
    first = _predict(client, {"symbol": "bitcoin", "timeframe": "24h"}).get_json()
    second = _predict(client, {"symbol": "BTC", "timeframe": "24h"}).get_json()
    other_tf = _predict(client, {"symbol": "bitcoin", "timeframe": "1h"}).get_json()
    other_version = _predict(client, {"symbol": "bitcoin", "model_version": "challenger"}).get_json()
    assert first["metadata"]["cache_hit"] is False
    assert second["metadata"]["cache_hit"] is True and second["data"] == first["data"]
    assert other_tf["metadata"]["cache_hit"] is False
    assert other_version["metadata"]["cache_hit"] is False
    uncached = make_app(CACHE_ENABLED=False).test_client()
    hits = [_predict(uncached, {"symbol": "bitcoin"}).get_json()["metadata"]["cache_hit"] for _ in range(2)]
    assert hits == [False, False]


def test_cached_bytes_are_what_jsonify_would_send(make_app):
    # Hits are served from pre-serialised JSON: same encoding and field order as jsonify of the parsed body.
    app = make_app()
    client = app.test_client()
    for expected_hit in (False, True):
        response = _predict(client, {"symbol": "ETH", "timeframe": "1h"})
        assert response.status_code == 200 and response.mimetype == "application/json"
        body = response.get_json()
        assert body["metadata"]["cache_hit"] is expected_hit
        assert list(body) == ["status", "data", "metadata"]
        with app.app_context():
            assert response.get_data() == jsonify(body).get_data()


def test_ab_assignment_is_sticky_and_the_served_version_is_reported(make_app, quick_bundle):
    client = make_app(AB_CHALLENGER_SHARE=0.5, CACHE_ENABLED=False).test_client()
    served = {}
    for i in range(16):
        headers = {"X-Client-Id": f"install-{i}"}
        versions = {_predict(client, {"symbol": "bitcoin"}, headers=headers).get_json()["data"]["model_version"]
                    for _ in range(2)}
        assert len(versions) == 1  # the same client always gets the same arm
        served[i] = versions.pop()
    assert set(served.values()) == {quick_bundle.production, quick_bundle.challenger}
    # an explicit version overrides the assignment
    data = _predict(client, {"symbol": "bitcoin", "model_version": "production"},
                    headers={"X-Client-Id": next(f"install-{i}" for i, v in served.items()
                                                 if v == quick_bundle.challenger)}).get_json()["data"]
    assert data["model_version"] == quick_bundle.production


@pytest.mark.parametrize("body, status, code", [
    ({"symbol": "dogecoinz"}, 404, "unknown_symbol"),
    ({"symbol": "bitcoin", "timeframe": "2h"}, 400, "unknown_timeframe"),
    ({"symbol": "bitcoin", "model_version": "v999"}, 404, "model_not_found"),
    ({"symbol": 42}, 422, "validation_error"),
    ({"symbol": ["bitcoin"]}, 422, "validation_error"),
    ({"symbol": "bitcoin", "timeframe": 24}, 422, "validation_error"),
    ({"symbol": "bitcoin", "model_version": {"v": 1}}, 422, "validation_error"),
    ({"timeframe": "24h"}, 422, "validation_error"),
    ({"symbol": "   "}, 422, "validation_error"),
    ({"symbol": "b" * 1000}, 422, "validation_error"),
])
def test_bad_requests(client, body, status, code):
    error = assert_error(_predict(client, body), status, code)
    if code == "unknown_symbol":
        assert all(s in error["message"] for s in core_ids()) and "154 more" in error["message"]
        assert error["details"]["supported"] == supported_ids()
    if code == "unknown_timeframe":
        assert "1h, 24h, 7d, 30d" in error["message"]


@pytest.mark.parametrize("raw, content_type", [
    (b"{not json", "application/json"),
    (b"", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"bitcoin"', "application/json"),
    (b"null", "application/json"),
    (b"\xff\xfe\x00garbage", "application/octet-stream"),
    (b"[" * 50_000, "application/json"),  # nesting deep enough to exhaust a recursive parser
    (b"symbol=bitcoin", "application/x-www-form-urlencoded"),
])
def test_malformed_or_non_object_json_is_400(client, raw, content_type):
    assert_error(client.post("/api/v1/predict", data=raw, content_type=content_type), 400, "malformed_request")


def test_json_sent_as_text_plain_is_accepted(client):
    response = client.post("/api/v1/predict", data='{"symbol": "bitcoin"}', content_type="text/plain")
    assert response.status_code == 200



def test_repeated_bodies_are_validated_once_and_bad_ones_every_time(client, monkeypatch):
    from crypto_predictor.api import operations

    monkeypatch.setattr(operations, "_memo", {})
    monkeypatch.setattr(operations, "MEMO_ENTRIES", 3)
    seen = []
    real = operations.validate
    monkeypatch.setattr(operations, "validate", lambda model, data: seen.append(data) or real(model, data))
    for _ in range(3):
        assert client.post("/api/v1/predict", json={"symbol": "bitcoin", "timeframe": "1h"}).status_code == 200
        assert_error(client.post("/api/v1/predict", json={"symbol": 5}), 422, "validation_error")
    assert seen.count({"symbol": "bitcoin", "timeframe": "1h"}) == 1 and seen.count({"symbol": 5}) == 3
    for name in ("BTC", "btc", "BTCUSDT", "Bitcoin"):  # more distinct bodies than the memo holds
        assert client.post("/api/v1/predict", json={"symbol": name, "timeframe": "1h"}).status_code == 200
    assert 0 < len(operations._memo) <= 3

def test_body_over_64_kib_is_413(client):
    body = '{"symbol": "bitcoin", "pad": "' + "x" * (64 * 1024) + '"}'
    assert_error(client.post("/api/v1/predict", data=body, content_type="application/json"), 413,
                 "payload_too_large")


def _chunked(client, body: bytes):
    """A body sent chunked, as Gunicorn hands it over: no Content-Length, the stream terminated."""
    return client.post("/api/v1/predict", input_stream=io.BytesIO(body), content_type="application/json",
                       environ_overrides={"wsgi.input_terminated": True})


def test_a_chunked_body_over_64_kib_is_413_not_malformed(client):
    body = b'{"symbol": "bitcoin", "pad": "' + b"x" * (64 * 1024) + b'"}'
    assert_error(_chunked(client, body), 413, "payload_too_large")
    assert _chunked(client, b'{"symbol": "bitcoin"}').status_code == 200  # a small chunked body is read whole


class _DownProvider:
    """A live market source that is down: the service must fall back, then refuse old data."""

    name = "down"

    def fetch(self, symbol, **kwargs):
        raise MarketDataUnavailable("provider down", provider="down", reason="test")


def test_data_too_old_is_503_with_retry_after(make_app, quick_bundle):
    config = TestConfig(DATABASE_URL=quick_bundle.database_url, MODELS_DIR=quick_bundle.models_dir)
    service = PredictionService(config, clock=lambda: FRESH_NOW + 3 * 86400, source=_DownProvider())
    client = make_app(service=service).test_client()
    response = _predict(client, {"symbol": "bitcoin"})
    error = assert_error(response, 503, "data_too_old")
    assert int(response.headers["Retry-After"]) >= 1
    assert error["details"]["retry_after"] >= 1


def test_batch(client, quick_bundle):
    response = client.post("/api/v1/predict/batch",
                           json={"symbols": ["bitcoin", "NOPE", "ETH"], "timeframe": "1h"})
    assert response.status_code == 200
    body = response.get_json()
    entries = body["data"]
    assert [e["symbol"] for e in entries] == ["bitcoin", "NOPE", "ETH"]
    assert [e["status"] for e in entries] == ["success", "error", "success"]
    assert entries[1]["error"]["code"] == "unknown_symbol"
    assert entries[2]["data"]["symbol"] == "ethereum" and entries[2]["data"]["timeframe"] == "1h"
    assert all(e["data"]["model_version"] == quick_bundle.production for e in entries if e["status"] == "success")
    for entry in (entries[0], entries[2]):
        assert_skill(entry["data"], quick_bundle)
    meta = body["metadata"]
    assert (meta["count"], meta["succeeded"], meta["failed"]) == (3, 2, 1)
    assert meta["model_version"] == quick_bundle.production


def test_batch_uses_and_fills_the_prediction_cache(make_app):
    client = make_app().test_client()
    _predict(client, {"symbol": "bitcoin", "timeframe": "24h"})
    entries = client.post("/api/v1/predict/batch", json={"symbols": ["bitcoin", "ethereum"]}).get_json()["data"]
    assert [e["cache_hit"] for e in entries] == [True, False]
    assert _predict(client, {"symbol": "ethereum"}).get_json()["metadata"]["cache_hit"] is True
    again = client.post("/api/v1/predict/batch", json={"symbols": ["bitcoin", "ethereum"]}).get_json()
    assert again["metadata"]["cache_hits"] == 2


@pytest.mark.parametrize("body, status, code", [
    ({"symbols": ["bitcoin"] * 51}, 413, "too_many_symbols"),
    ({"symbols": []}, 422, "validation_error"),
    ({"symbols": "bitcoin"}, 422, "validation_error"),
    ({"symbols": ["bitcoin", 7]}, 422, "validation_error"),
    ({}, 422, "validation_error"),
    ({"symbols": ["bitcoin"], "timeframe": "1y"}, 400, "unknown_timeframe"),
    ({"symbols": ["bitcoin"], "model_version": "v404"}, 404, "model_not_found"),
])
def test_batch_errors(client, body, status, code):
    assert_error(client.post("/api/v1/predict/batch", json=body), status, code)


@pytest.mark.parametrize("path, body, status, message", [
    ("/api/v1/predict", {"symbol": 42}, 422, "'symbol' must be a string, got a JSON number"),
    ("/api/v1/predict", {"timeframe": "24h"}, 422, "'symbol' is required"),
    ("/api/v1/predict", {"symbol": "   "}, 422, "'symbol' must not be empty"),
    ("/api/v1/predict", {"symbol": "b" * 65}, 422, "'symbol' must be at most 64 characters"),
    ("/api/v1/predict", {"symbol": 1, "timeframe": "2h"}, 422, "'symbol' must be a string"),  # first field first
    ("/api/v1/predict", {"symbol": "BTC", "timeframe": "2h", "model_version": []}, 400, "unknown timeframe '2h'"),
    ("/api/v1/predict/batch", {"symbols": ["bitcoin", 7]}, 422, "'symbols[1]' must be a string, got a JSON number"),
    ("/api/v1/predict/batch", {"symbols": "bitcoin"}, 422, "'symbols' must be a list of strings, got a JSON string"),
    ("/api/v1/predict/batch", {}, 422, "'symbols' is required: a list of symbol names"),
    ("/api/v1/predict/batch", {"symbols": [7] * 60}, 413, "at most 50 symbols per batch, got 60"),
])
def test_validation_messages_name_the_field_and_what_is_accepted(client, path, body, status, message):
    error = assert_error(client.post(path, json=body), status)
    assert message in error["message"]
    if status == 422:
        assert error["details"]["field"] == error["message"].split("'")[1].split("[")[0]


def test_blank_or_null_optional_fields_take_their_defaults(client):
    for extra in ({"timeframe": None}, {"timeframe": "  "}, {"model_version": None}, {"model_version": ""},
                  {"unknown_field": {"nested": [1]}}):
        data = _predict(client, {"symbol": " BTC ", **extra}).get_json()["data"]
        assert data["symbol"] == "bitcoin" and data["timeframe"] == "24h"
    assert _predict(client, {"symbol": "eth", "timeframe": "1H"}).get_json()["data"]["timeframe"] == "1h"


def test_batch_of_fifty_is_allowed(client):
    response = client.post("/api/v1/predict/batch", json={"symbols": ["bitcoin", "ethereum"] * 25})
    assert response.status_code == 200 and len(response.get_json()["data"]) == 50


def test_wrong_method_and_unknown_path(client):
    response = client.delete("/api/v1/predict")
    assert_error(response, 405, "method_not_allowed")
    assert {"POST", "GET"} <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert_error(client.get("/api/v1/predict/batch"), 405, "method_not_allowed")
    assert_error(client.post("/api/v1/nothing-here", json={}), 404, "not_found")


def test_rate_limit_is_429_with_retry_after(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="3 per minute").test_client()
    statuses = [client.get("/api/v1/symbols").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/api/v1/symbols")
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert client.get("/api/health").status_code in (200, 503)  # probes are never throttled
    assert client.get("/metrics").status_code == 200
