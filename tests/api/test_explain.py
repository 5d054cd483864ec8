"""explain: true — the top feature contributions of the served forecast, computed once per candle."""

from __future__ import annotations

import math

import pytest

from crypto_predictor.serving.explain import TOP


@pytest.fixture()
def fresh(make_app):
    app = make_app()
    return app.test_client(), app.extensions["prediction_service"].service


def _check(explanation: dict, data: dict, features: list) -> None:
    listed = explanation["contributions"]
    assert 1 <= len(listed) <= TOP and {c["feature"] for c in listed} <= set(features)
    sizes = [abs(c["contribution"]) for c in listed]
    assert sizes == sorted(sizes, reverse=True)
    total = explanation["base_value"] + sum(c["contribution"] for c in listed) + explanation["other_features"]
    assert total == pytest.approx(explanation["model_log_return"], abs=1e-9)
    shrink = 1 - explanation["naive_weight"]
    assert explanation["served_log_return"] == pytest.approx(shrink * explanation["model_log_return"], abs=1e-9)
    # and it explains the price that was served
    served = data["current_price"] * math.exp(explanation["served_log_return"])
    assert data["predicted_price"] == pytest.approx(served, rel=1e-9)
    assert explanation["member_weights"] == {"linear": 1.0} and explanation["omitted"] == []
    assert explanation["data_as_of"] == data["data_as_of"]


def test_explain_adds_contributions_that_add_up_to_the_served_forecast(fresh):
    client, service = fresh
    plain = client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"}).get_json()["data"]
    assert "explanation" not in plain and service.explainer.computed == 0  # nothing unless asked
    body = client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h", "explain": True}).get_json()
    pair = service.snapshot().bundles[plain["model_version"]].pair("bitcoin", "1h")
    _check(body["data"]["explanation"], body["data"], pair.features)
    assert {k: v for k, v in body["data"].items() if k not in ("explanation", "prediction_time")} == {
        k: v for k, v in plain.items() if k != "prediction_time"}
    again = client.get("/api/v1/predict?symbol=bitcoin&timeframe=1h&explain=true").get_json()
    assert again["data"]["explanation"] == body["data"]["explanation"]
    assert service.explainer.computed == 1  # once per (version, asset, timeframe, candle)


def test_the_etag_of_an_explained_answer_differs(fresh):
    client, _ = fresh
    plain = client.get("/api/v1/predict?symbol=BTC&timeframe=24h")
    explained = client.get("/api/v1/predict?symbol=BTC&timeframe=24h&explain=1")
    assert plain.headers["ETag"] != explained.headers["ETag"]
    again = client.get("/api/v1/predict?symbol=BTC&timeframe=24h&explain=1",
                       headers={"If-None-Match": explained.headers["ETag"]})
    assert again.status_code == 304


def test_batch_explains_every_successful_entry(fresh):
    client, service = fresh
    body = client.post("/api/v1/predict/batch", json={"symbols": ["BTC", "ETH", "NOPE"], "timeframe": "24h",
                                                      "explain": True}).get_json()
    ok, bad = body["data"][:2], body["data"][2]
    for entry in ok:
        pair = service.snapshot().bundles[entry["data"]["model_version"]].pair(entry["data"]["symbol"], "24h")
        _check(entry["data"]["explanation"], entry["data"], pair.features)
    assert bad["status"] == "error" and "explanation" not in bad


@pytest.mark.parametrize("value", ["maybe", "", "2"])
def test_a_bad_explain_flag_is_a_422_naming_it(fresh, value):
    client, _ = fresh
    got = client.get(f"/api/v1/predict?symbol=BTC&explain={value}")
    assert got.status_code == 422 and "explain" in got.get_data(as_text=True)
    posted = client.post("/api/v1/predict", json={"symbol": "BTC", "explain": "maybe"})
    assert posted.status_code == 422
