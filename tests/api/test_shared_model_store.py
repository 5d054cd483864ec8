"""Two workers on different hosts (own MODELS_DIR each) serving from one shared model store."""

from __future__ import annotations

import shutil

import pytest

from crypto_predictor.config import TestConfig
from crypto_predictor.registry.sql_store import SqlStore
from crypto_predictor.serving.service import PredictionService
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.api.conftest import FRESH_NOW

OPTIONS = TrainOptions(kinds=("linear",), quick=True)


@pytest.fixture()
def shared(quick_bundle, tmp_path):
    """(store URL, trainer's store): the trainer trains into its own directory and pushes."""
    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'models.db'}"
    return url, SqlStore(url, tmp_path / "trainer")


def worker(quick_bundle, url, root) -> PredictionService:
    config = TestConfig(DATABASE_URL=quick_bundle.database_url, MODELS_DIR=str(root), MODEL_STORE_URL=url,
                        MODEL_POLL_SECONDS=0)
    return PredictionService(config, clock=lambda: FRESH_NOW)


def served(service) -> str:
    return service.predict("bitcoin", "1h")["model_version"]


def test_workers_pull_verify_and_switch_together(quick_bundle, shared, tmp_path):
    url, trainer = shared
    v1, _ = train_run(quick_bundle.database_url, ["bitcoin"], ["1h"], OPTIONS, trainer.root, n_jobs=1, store=trainer)
    trainer.set_alias("production", v1)
    workers = [worker(quick_bundle, url, tmp_path / f"host{i}") for i in range(2)]
    assert [served(w) for w in workers] == [v1, v1]
    for i in range(2):  # each host holds its own verified copy, pulled from the database
        assert (tmp_path / f"host{i}" / v1 / "manifest.json").is_file()

    v2, _ = train_run(quick_bundle.database_url, ["bitcoin"], ["1h"], OPTIONS, trainer.root, n_jobs=1, store=trainer)
    assert v2 != v1
    trainer.set_alias("production", v2)
    assert [served(w) for w in workers] == [v2, v2]
    assert workers[0].versions()["aliases"] == {"production": v2}
    assert workers[1].performance("production")["version"] == v2
    trainer.rollback()
    assert [served(w) for w in workers] == [v1, v1]


def test_a_copy_tampered_with_on_one_host_is_refused_and_the_old_version_keeps_serving(quick_bundle, shared,
                                                                                        tmp_path):
    url, trainer = shared
    v1, _ = train_run(quick_bundle.database_url, ["bitcoin"], ["1h"], OPTIONS, trainer.root, n_jobs=1, store=trainer)
    v2, _ = train_run(quick_bundle.database_url, ["bitcoin"], ["1h"], OPTIONS, trainer.root, n_jobs=1, store=trainer)
    trainer.set_alias("production", v1)
    host = worker(quick_bundle, url, tmp_path / "host")
    assert served(host) == v1
    SqlStore(url, tmp_path / "host").fetch(v2)  # pulled ahead of the switch, then altered on this host
    manifest = tmp_path / "host" / v2 / "manifest.json"
    pair = next(p for p in (tmp_path / "host" / v2).rglob("pair.json"))
    pair.write_text(pair.read_text().replace("1", "2", 1))
    trainer.set_alias("production", v2)
    assert served(host) == v1
    health = host.health()
    assert not health["ok"] and health["checks"]["model"]["refused"]["version"] == v2
    shutil.rmtree(manifest.parent)  # ops remove the bad copy: the next poll pulls a good one
    assert served(host) == v2 and host.health()["checks"]["model"]["ok"]


def test_an_unreachable_store_keeps_serving_what_is_loaded(quick_bundle, shared, tmp_path):
    url, trainer = shared
    v1, _ = train_run(quick_bundle.database_url, ["bitcoin"], ["1h"], OPTIONS, trainer.root, n_jobs=1, store=trainer)
    trainer.set_alias("production", v1)
    host = worker(quick_bundle, url, tmp_path / "host")
    assert served(host) == v1
    # The database goes away (its folder renamed: SQLite cannot open it) and its pooled
    # connections with it, as in an outage.
    moved = (tmp_path / "db").rename(tmp_path / "away")
    host.model_store.engine.dispose()
    assert served(host) == v1  # the copy in memory answers
    refused = host.health()["checks"]["model"]["refused"]
    assert refused["error"].startswith("ModelStoreUnavailable: model store sqlite:///")
    moved.rename(tmp_path / "db")
    host.model_store.engine.dispose()
    assert served(host) == v1 and host.health()["checks"]["model"]["ok"]
