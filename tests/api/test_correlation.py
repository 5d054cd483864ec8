"""GET /api/v1/analysis/correlation: the return correlation matrix and rolling correlations to bitcoin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crypto_predictor.market.store import CandleStore
from crypto_predictor.serving.analysis import resample
from crypto_predictor.serving.correlation import ROLLING_BARS


def test_the_matrix_is_the_correlation_of_bar_returns(client, quick_bundle):
    answer = client.get("/api/v1/analysis/correlation?symbols=BTC,ethereum&days=20&interval=4h")
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()["data"]
    assert data["symbols"] == ["bitcoin", "ethereum"] and data["interval"] == "4h"
    store = CandleStore(quick_bundle.database_url)
    end = quick_bundle.newest
    start = end - pd.Timedelta(days=20) + pd.Timedelta(hours=1) - pd.Timedelta(hours=4)
    closes = pd.concat({a: resample(store.load(a, "1h", start, end), "4h")["close"] for a in ("bitcoin", "ethereum")},
                       axis=1, join="inner")
    returns = np.log(closes).diff().iloc[1:]
    assert data["bars"] == len(returns) == 20 * 6  # complete 4h bars of 20 days
    assert data["matrix"]["bitcoin"]["bitcoin"] == 1.0
    assert data["matrix"]["bitcoin"]["ethereum"] == round(returns["bitcoin"].corr(returns["ethereum"]), 4)
    assert data["matrix"]["ethereum"]["bitcoin"] == data["matrix"]["bitcoin"]["ethereum"]
    rolling = data["rolling_to_reference"]["ethereum"]
    assert len(rolling) == len(returns) - ROLLING_BARS + 1
    last = returns.iloc[-ROLLING_BARS:]
    assert rolling[-1]["correlation"] == round(last["ethereum"].corr(last["bitcoin"]), 4)
    assert "bitcoin" not in data["rolling_to_reference"]
    assert answer.headers["ETag"] and answer.cache_control.max_age > 0


def test_bad_requests_say_what_is_accepted(client):
    one = client.get("/api/v1/analysis/correlation?symbols=bitcoin")
    assert one.status_code == 422 and "2 to 20 different symbols" in one.get_json()["error"]["message"]
    same = client.get("/api/v1/analysis/correlation?symbols=BTC,bitcoin")
    assert same.status_code == 422 and "at least 2 different assets" in same.get_json()["error"]["message"]
    unknown = client.get("/api/v1/analysis/correlation?symbols=bitcoin,NOPE")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "unknown_symbol"
    unstored = client.get("/api/v1/analysis/correlation?symbols=bitcoin,solana")
    assert unstored.status_code == 404 and "solana" in unstored.get_json()["error"]["message"]
    short = client.get("/api/v1/analysis/correlation?symbols=bitcoin,ethereum&days=10&interval=1d")
    assert short.status_code == 400 and short.get_json()["error"]["code"] == "insufficient_data"
    assert "at least 30" in short.get_json()["error"]["message"]
    assert client.get("/api/v1/analysis/correlation?symbols=bitcoin,ethereum&days=0").status_code == 422
    assert client.get("/api/v1/analysis/correlation?symbols=bitcoin,ethereum&interval=2h").status_code == 400


def test_the_route_does_not_shadow_an_asset_analysis(client):
    assert client.get("/api/v1/analysis/bitcoin?days=5").get_json()["data"]["symbol"] == "bitcoin"
