"""A small served model for tests that start a real server: candles in a store and a quick bundle."""

from __future__ import annotations

from pathlib import Path

from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.slices import fill_store


def quick_production(url: str, models: Path, data_dir: Path, last_days: int = 60, seed: int = 42) -> str:
    """Store bitcoin and ethereum (its context asset) for the newest ``last_days`` days at ``url``,
    train a quick linear bitcoin 1h bundle into ``models`` and deploy it as production; its version."""
    fill_store(url, data_dir, ("bitcoin", "ethereum"), last_days=last_days)
    version, _ = train_run(url, ["bitcoin"], ["1h"], TrainOptions(kinds=("linear",), quick=True, seed=seed), models,
                           n_jobs=1)
    set_alias(models, "production", version)
    return version
