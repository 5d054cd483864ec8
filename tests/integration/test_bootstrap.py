"""``bootstrap`` on an empty database against the local fake Binance: the API is then ready; a second run
changes nothing."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from crypto_predictor.api import create_app
from crypto_predictor.cli.main import cli
from crypto_predictor.config import TestConfig
from crypto_predictor.market.store import CandleStore
from crypto_predictor.registry.sql_store import SqlStore
from crypto_predictor.serving.service import PredictionService
from tests.conftest import FAKE_NOW_MS

FAKE_NOW = pd.Timestamp(FAKE_NOW_MS, unit="ms", tz="UTC")


def run(env, *args):
    return CliRunner().invoke(cli, ["bootstrap", "--as-of", FAKE_NOW.isoformat(), "--jobs", "1", *args], env=env)


def test_bootstrap_makes_an_empty_deployment_ready_and_then_changes_nothing(tmp_path, fake_market):
    db, shared = f"sqlite:///{tmp_path / 'app.db'}", f"sqlite:///{tmp_path / 'models.db'}"
    env = {"DATABASE_URL": db, "MODEL_STORE_URL": shared, "MODELS_DIR": str(tmp_path / "job_copies"),
           "MARKET_DATA_SOURCE": "binance", "BINANCE_BASE_URL": fake_market.url, "REFRESH_ASSETS": "bitcoin",
           "BOOTSTRAP_DAYS": "60", "BOOTSTRAP_TIMEFRAMES": "1h", "BOOTSTRAP_MODELS": "linear",
           "HTTP_RETRIES": "0", "HTTP_BACKOFF": "0.01"}
    first = run(env)
    assert first.exit_code == 0, first.output
    assert "candles: ingested 2 asset(s), 60 days back" in first.output  # bitcoin and its context, ethereum
    assert "production: (unset) -> v1" in first.output and first.output.rstrip().endswith("bootstrap: done")
    store = CandleStore(db)
    counts = {a: len(store.load(a)) for a in ("bitcoin", "ethereum")}
    assert all(24 * 59 <= n <= 24 * 60 for n in counts.values()), counts

    # A web instance with its own empty directory becomes ready on its own.
    config = TestConfig(DATABASE_URL=db, MODEL_STORE_URL=shared, MODELS_DIR=str(tmp_path / "web"),
                        MARKET_DATA_SOURCE="csv")
    app = create_app(config, service=PredictionService(config, clock=lambda: FAKE_NOW.timestamp()))
    health = app.test_client().get("/api/health")
    assert health.status_code == 200, health.get_json()
    assert health.get_json()["model_version"] == "v1"

    second = run(env)
    assert second.exit_code == 0, second.output
    assert "candles: all 2 asset(s) stored; nothing to ingest" in second.output
    assert "model: production is v1; nothing to train" in second.output
    assert second.output.rstrip().endswith("bootstrap: nothing to do")
    assert {a: len(store.load(a)) for a in ("bitcoin", "ethereum")} == counts
    assert SqlStore(shared, tmp_path / "other").available_versions() == ["v1"]


@pytest.mark.parametrize("setting, message", [
    ({"BOOTSTRAP_TIMEFRAMES": "1h,2h"}, "BOOTSTRAP_TIMEFRAMES: unknown 2h; valid: 1h, 24h, 7d, 30d"),
    ({"BOOTSTRAP_MODELS": "linear,gpt"}, "BOOTSTRAP_MODELS: unknown model kind 'gpt'; valid kinds: "),
    ({"BOOTSTRAP_DAYS": "7"}, "BOOTSTRAP_DAYS must be at least 30"),
])
def test_bootstrap_refuses_bad_settings_with_one_line_before_doing_anything(tmp_path, fake_market, setting, message):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", "MODELS_DIR": str(tmp_path / "models"),
           "BINANCE_BASE_URL": fake_market.url, **setting}
    result = run(env)
    assert result.exit_code == 1
    assert message in result.output
    assert not CandleStore(env["DATABASE_URL"]).assets("1h") and not (tmp_path / "models").exists()
