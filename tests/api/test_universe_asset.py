"""A universe asset end to end: ALGO ingested from the shared data root, trained on a slice by the
train CLI, and served through the API by its ticker and pair."""

from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from crypto_predictor.api import create_app
from crypto_predictor.cli.train import train_command
from crypto_predictor.config import TestConfig
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.serving.service import PredictionService
from tests.api.conftest import FRESH_NOW
from tests.support.slices import DATA_END, write_slice


def test_algo_is_trained_on_a_slice_and_served_by_ticker(tmp_path, data_dir):
    since = (DATA_END - pd.Timedelta(days=60)).isoformat()
    # The shared data root holds ohlcv/ and universe/: one source reaches both tiers.
    csv_dir = write_slice(data_dir.parent, tmp_path / "csv", since, assets=("bitcoin", "ALGO"))
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "MODELS_DIR": str(tmp_path / "models")}
    result = CliRunner().invoke(train_command, ["--symbol", "ALGO", "--timeframe", "1h", "--model", "linear",
                                                "--quick", "--data-dir", str(csv_dir), "--jobs", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "v1"

    set_alias(env["MODELS_DIR"], "production", "v1")
    config = TestConfig(**env)
    client = create_app(config, service=PredictionService(config, clock=lambda: FRESH_NOW)).test_client()
    for spelling in ("ALGO", "algousdt", "algorand"):
        response = client.post("/api/v1/predict", json={"symbol": spelling, "timeframe": "1h"})
        assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        assert data["symbol"] == "algorand" and data["model_version"] == "v1"
        assert data["skill"]["n"] > 100 and isinstance(data["skill"]["beats_naive"], bool)
    symbols = client.get("/api/v1/symbols").get_json()["data"]["symbols"]
    assert [s["id"] for s in symbols if s["served"]] == ["algorand"]
    # An asset the bundle does not hold answers 404 with what it has.
    missing = client.post("/api/v1/predict", json={"symbol": "ACM", "timeframe": "1h"})
    assert missing.status_code == 404 and "algorand/1h" in missing.get_json()["error"]["message"]
