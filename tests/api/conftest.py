"""Fixtures for the API tests: a real quick bundle on a real store, and apps serving it.

The store holds the last 90 days of the shared BTC and ETH candles (ending 2021-09-30T23:00Z);
two linear-only quick bundles are trained once per session: v1 (production) and v2
(challenger). The service's clock is pinned to just after the last candle closed, so the
data is fresh for it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from crypto_predictor.api import create_app
from crypto_predictor.config import TestConfig
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.serving.service import PredictionService
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.slices import fill_store

ASSETS = ("bitcoin", "ethereum")
TIMEFRAMES = ("1h", "24h")
# One hour after the newest candle's open: it has just closed.
FRESH_NOW = pd.Timestamp("2021-10-01T00:05:00Z").timestamp()


@pytest.fixture(scope="session")
def quick_bundle(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("api_bundle")
    url = f"sqlite:///{root / 'store.db'}"
    store = fill_store(url, data_dir, ASSETS, last_days=90)
    models = root / "models"
    versions = []
    for seed in (1, 2):
        version, _ = train_run(url, list(ASSETS), list(TIMEFRAMES),
                               TrainOptions(kinds=("linear",), quick=True, seed=seed), models, n_jobs=1)
        versions.append(version)
    set_alias(models, "production", versions[0])
    set_alias(models, "challenger", versions[1])
    return SimpleNamespace(database_url=url, models_dir=str(models), production=versions[0],
                           challenger=versions[1], newest=store.latest_time("bitcoin"))


@pytest.fixture(scope="session")
def make_app(quick_bundle, tmp_path_factory):
    """``make_app(clock=..., **config overrides)``: a fresh app (own cache) on the quick bundle."""

    def make(clock=lambda: FRESH_NOW, service=None, **overrides):
        settings = {"DATABASE_URL": quick_bundle.database_url, "MODELS_DIR": quick_bundle.models_dir}
        settings.update(overrides)
        config = TestConfig(**settings)
        if service is None:
            service = PredictionService(config, clock=clock)
        return create_app(config, service=service)

    return make


@pytest.fixture(scope="module")
def app(make_app):
    return make_app()


@pytest.fixture()
def client(app):
    return app.test_client()

