"""GET endpoints: analysis, models, model performance, symbols, prediction history."""

from __future__ import annotations

import pytest

from crypto_predictor.symbols import supported_ids
from tests.api.helpers import assert_error


@pytest.mark.parametrize("interval, bars", [("1d", 30), ("4h", 180), ("1h", 720)])
def test_analysis_intervals(client, interval, bars):
    response = client.get(f"/api/v1/analysis/BTC?days=30&interval={interval}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    data = body["data"]
    assert data["symbol"] == "bitcoin" and data["interval"] == interval and data["days"] == 30
    # "days" counts back from the newest stored candle (2021-09-30T23:00Z), not from today
    assert data["data_as_of"] == "2021-10-01T00:00:00+00:00"
    assert data["window"] == {"start": "2021-09-01T00:00:00+00:00", "end": "2021-10-01T00:00:00+00:00"}
    assert len(data["ohlcv"]) == bars and data["ohlcv"][-1]["close"] == pytest.approx(43824.1)
    assert set(data["indicators"]) >= {"sma_20", "sma_50", "ema_12", "ema_26", "rsi_14", "macd", "macd_signal",
                                      "macd_hist", "bb_upper", "bb_middle", "bb_lower"}
    assert all(len(s) == bars and None not in s for s in data["indicators"].values())
    summary = data["summary"]
    assert summary["bars"] == bars and summary["max_drawdown_pct"] <= 0
    assert summary["end_price"] == pytest.approx(43824.1)
    assert summary["volume_trend"]["direction"] in ("up", "down", "flat")
    signal = data["signal"]
    assert signal["signal"] in ("BUY", "SELL", "HOLD") and len(signal["votes"]) == 5
    assert signal["score"] == sum(v["vote"] for v in signal["votes"])
    assert body["metadata"]["cache_hit"] is False


def test_analysis_defaults_cache_and_short_history(make_app):
    client = make_app().test_client()
    first = client.get("/api/v1/analysis/ethereum").get_json()
    assert first["data"]["interval"] == "1d" and first["data"]["days"] == 30
    assert first["metadata"]["cache_hit"] is False
    assert client.get("/api/v1/analysis/ETH").get_json()["metadata"]["cache_hit"] is True
    assert client.get("/api/v1/analysis/ETH?days=29").get_json()["metadata"]["cache_hit"] is False
    # the store holds ~90 days: a longer window is what there is, and says so
    long = client.get("/api/v1/analysis/bitcoin?days=365&interval=1d").get_json()["data"]
    assert 85 <= len(long["ohlcv"]) <= 90 and long["window"]["start"] > "2021-07-01"


@pytest.mark.parametrize("path, status, code", [
    ("/api/v1/analysis/notacoin", 404, "unknown_symbol"),
    ("/api/v1/analysis/ripple", 404, "data_not_found"),  # a supported asset with nothing stored
    ("/api/v1/analysis/bitcoin?interval=2h", 400, "unknown_timeframe"),
    ("/api/v1/analysis/bitcoin?days=abc", 422, "validation_error"),
    ("/api/v1/analysis/bitcoin?days=0", 422, "validation_error"),
    ("/api/v1/analysis/bitcoin?days=366", 422, "validation_error"),
    ("/api/v1/analysis/bitcoin?days=1.5", 422, "validation_error"),
    ("/api/v1/analysis/" + "x" * 200, 422, "validation_error"),
])
def test_analysis_errors(client, path, status, code):
    error = assert_error(client.get(path), status, code)
    if code == "unknown_timeframe":
        assert "1h, 4h, 1d" in error["message"]


def test_query_integers_are_read_strictly(client):
    for days in ("1.0", "1e1", "5x", "9" * 13):
        error = assert_error(client.get(f"/api/v1/analysis/bitcoin?days={days}"), 422, "validation_error")
        assert error["message"] == "'days' must be an integer from 1 to 365"
    error = assert_error(client.get("/api/v1/analysis/bitcoin?days=0"), 422, "validation_error")
    assert error["message"] == "'days' must be from 1 to 365, got 0"
    assert client.get("/api/v1/analysis/bitcoin?days=%207%20&interval=").get_json()["data"]["days"] == 7


def test_models_lists_versions_with_aliases(client, quick_bundle):
    from crypto_predictor.registry.bundle import load_manifest

    body = client.get("/api/v1/models").get_json()
    assert body["status"] == "success"
    text = str(body["data"])
    assert quick_bundle.production in text and quick_bundle.challenger in text and "production" in text
    row = next(r for r in body["data"]["versions"] if r["version"] == quick_bundle.production)
    assert row["aliases"] == ["production"] and "metrics" not in row  # every figure: /models/performance
    rows = load_manifest(f"{quick_bundle.models_dir}/{quick_bundle.production}")["metrics"]["overall"]["bitcoin"]["1h"]
    skill = row["skill"]["bitcoin"]["1h"]  # /predict's skill block of the pair
    assert set(row["skill"]) == {"bitcoin", "ethereum"} and set(row["skill"]["bitcoin"]) == {"1h", "24h"}
    assert skill["mase"] == pytest.approx(rows["served"]["mase"]) and skill["n"] == rows["served"]["n"]
    assert skill["interval_score_ratio_80"] == pytest.approx(
        rows["served"]["interval_score_80"] / rows["baseline_quantile"]["interval_score_80"])


def test_model_performance(client, quick_bundle):
    for name in (quick_bundle.production, "production"):
        response = client.get(f"/api/v1/models/performance/{name}")
        assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        assert quick_bundle.production in str(data) and "mase" in str(data)
    rows = data["walk_forward"]["bitcoin"]["1h"]
    assert {"served", "naive", "baseline_quantile", "baseline_static"} <= set(rows)
    served = rows["served"]
    assert served["interval_score_80"] > 0 and served["interval_score_95"] > 0
    assert len(served["reliability"]) == 10 and sum(b["n"] for b in served["reliability"]) == served["brier_n"]
    # a forecast shrunk to no-change calls no direction: no Brier score rather than a made-up one
    assert (served["brier"] is None) == (served["brier_n"] == 0)
    calls = [row for kind, row in rows.items() if row["brier_n"]]
    assert calls and all(0 <= row["brier"] <= 1 for row in calls)
    assert len(served["coverage_80_by_vol"]) == 3 and "reliability" not in rows["naive"]
    assert served["coverage_80_se"] > 0 and len(served["coverage_95_by_vol_se"]) == 3
    assert_error(client.get("/api/v1/models/performance/v999"), 404, "model_not_found")


def test_symbols(client, quick_bundle):
    data = client.get("/api/v1/symbols").get_json()["data"]
    assert [s["id"] for s in data["symbols"]] == supported_ids()
    assert {"id": "bitcoin", "ticker": "BTC", "name": "Bitcoin", "pair": "BTCUSDT", "tier": "core",
            "coingecko_id": "bitcoin", "served": True} in data["symbols"]
    assert {"id": "acm", "ticker": "ACM", "name": "ACM", "pair": "ACMUSDT", "tier": "universe", "coingecko_id": None,
            "served": False} in data["symbols"]
    assert len(data["symbols"]) == 174
    assert [s["id"] for s in data["symbols"] if s["served"]] == ["bitcoin", "ethereum"]
    assert data["timeframes"] == ["1h", "24h", "7d", "30d"] and data["intervals"] == ["1h", "4h", "1d"]
    assert data["served_timeframes"] == ["1h", "24h"] and data["model_version"] == quick_bundle.production


def test_prediction_history_shows_served_predictions(make_app):
    app = make_app()
    client = app.test_client()
    client.post("/api/v1/predict", json={"symbol": "ethereum", "timeframe": "1h"})
    client.post("/api/v1/predict", json={"symbol": "ethereum", "timeframe": "24h"})
    service = app.extensions["prediction_service"].service
    assert service.log.flush()  # the log is written by a background thread
    body = client.get("/api/v1/predictions/ETH/history?limit=5").get_json()
    assert body["status"] == "success"
    rows = body["data"]
    assert {r["timeframe"] for r in rows} >= {"1h", "24h"} and len(rows) <= 5
    assert body["metadata"]["limit"] == 5
    assert len(client.get("/api/v1/predictions/ETH/history?limit=1").get_json()["data"]) == 1


@pytest.mark.parametrize("path, status, code", [
    ("/api/v1/predictions/nope/history", 404, "unknown_symbol"),
    ("/api/v1/predictions/bitcoin/history?limit=0", 422, "validation_error"),
    ("/api/v1/predictions/bitcoin/history?limit=ten", 422, "validation_error"),
    ("/api/v1/predictions/bitcoin/history?limit=100000", 422, "validation_error"),
])
def test_history_errors(client, path, status, code):
    assert_error(client.get(path), status, code)
