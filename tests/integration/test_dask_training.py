"""Training fanned out on a real Dask cluster (2 worker processes on 127.0.0.1) gives the bundle a local run gives.

The bundle is written by the client either way; every file is compared byte for byte, the manifest
after dropping what a second run always changes (created_at and the measured seconds).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from crypto_predictor.cli.main import cli
from crypto_predictor.training.fanout import DaskFanout
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.slices import fill_store

pytestmark = pytest.mark.slow

ASSETS = ["bitcoin", "ethereum"]
GLOBAL = TrainOptions(kinds=("linear", "xgboost", "ensemble"), quick=True, seed=5, design="global",
                      members=("linear", "xgboost"))


@pytest.fixture(scope="module")
def store_url(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("dask_training")
    url = f"sqlite:///{root / 'store.db'}"
    fill_store(url, data_dir, ASSETS, last_days=90)
    return url


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield cluster, client


def _files(bundle: Path) -> dict:
    return {str(p.relative_to(bundle)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(bundle.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def _manifest(bundle: Path) -> dict:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if "seconds" not in k and k != "created_at"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads((bundle / "manifest.json").read_text()))


def _same_bundle(a: Path, b: Path) -> None:
    assert _files(a) == _files(b)
    assert _manifest(a) == _manifest(b)


def test_a_global_bundle_trained_on_the_cluster_equals_the_local_one(store_url, cluster, tmp_path):
    _, client = cluster
    local, _ = train_run(store_url, ASSETS, ["1h", "24h"], GLOBAL, tmp_path / "local", n_jobs=1)
    fanout = DaskFanout(cluster[0].scheduler_address, client=client)
    remote, results = train_run(store_url, ASSETS, ["1h", "24h"], GLOBAL, tmp_path / "dask", fanout=fanout)
    _same_bundle(tmp_path / "local" / local, tmp_path / "dask" / remote)
    workers = set(client.run(os.getpid).values())
    assert set(fanout.ran_on) <= workers and os.getpid() not in fanout.ran_on  # every fit ran on a worker
    # per timeframe: the datasets (one chunk of assets), 2 kinds x (2 folds + the final fit), each asset's scoring
    assert sum(fanout.ran_on.values()) == 2 * (1 + 2 * 3 + len(ASSETS))
    assert len(results) == 4


def test_per_pair_trainings_return_their_files_to_the_client(store_url, cluster, tmp_path):
    _, client = cluster
    options = TrainOptions(kinds=("linear", "xgboost", "ensemble"), members=("linear", "xgboost"), quick=True,
                           seed=5, design="pair")
    local, _ = train_run(store_url, ASSETS, ["24h"], options, tmp_path / "local", n_jobs=1)  # nothing pickled
    fanout = DaskFanout(cluster[0].scheduler_address, client=client)
    remote, _ = train_run(store_url, ASSETS, ["24h"], options, tmp_path / "dask", fanout=fanout)
    _same_bundle(tmp_path / "local" / local, tmp_path / "dask" / remote)
    # per pair: one task per (asset, timeframe, kind) fit, then the pair's scoring
    assert sum(fanout.ran_on.values()) == len(ASSETS) * (2 + 1) and os.getpid() not in fanout.ran_on


def test_a_worker_killed_mid_run_still_gives_the_same_bundle(store_url, tmp_path):
    slow = TrainOptions(kinds=("random_forest",), quick=False, seed=5, design="global", n_folds=3)
    local, _ = train_run(store_url, ASSETS, ["1h"], slow, tmp_path / "local", n_jobs=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        fanout = DaskFanout(cluster.scheduler_address, client=client)
        out = {}
        run = threading.Thread(target=lambda: out.update(version=train_run(
            store_url, ASSETS, ["1h"], slow, tmp_path / "dask", fanout=fanout)[0]))
        run.start()
        deadline = time.monotonic() + 60
        busy = {}
        while not busy and time.monotonic() < deadline:  # a worker with a fit in hand
            busy = {w: keys for w, keys in client.processing().items() if keys}
            time.sleep(0.02)
        assert busy, "no task ever reached a worker"
        victim = next(iter(busy))
        os.kill(pids[victim], signal.SIGKILL)
        run.join(timeout=300)
        assert not run.is_alive() and "version" in out
        assert pids[victim] not in client.run(os.getpid).values()  # it died (its nanny started another)
    _same_bundle(tmp_path / "local" / local, tmp_path / "dask" / out["version"])


def test_the_cli_trains_through_the_scheduler_and_names_it(store_url, cluster, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--symbol", "bitcoin", "--symbol", "ethereum", "--timeframe", "24h",
                                      "--model", "linear", "--quick", "--design", "global", "--models-dir",
                                      str(tmp_path), "--scheduler", cluster[0].scheduler_address],
                                env={"DATABASE_URL": store_url})
    assert result.exit_code == 0, result.output
    assert f"fits run on dask at {cluster[0].scheduler_address} (2 worker(s))" in result.output
    assert (tmp_path / result.output.strip().splitlines()[-1] / "manifest.json").exists()


def test_an_unreachable_scheduler_is_one_error_line(store_url, tmp_path):
    import dask

    from tests.support.servers import free_port

    started = time.monotonic()
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):  # what the DASK_ variable sets
        result = CliRunner().invoke(cli, ["train", "--symbol", "bitcoin", "--timeframe", "24h", "--model", "linear",
                                          "--quick", "--models-dir", str(tmp_path)],
                                    env={"DATABASE_URL": store_url,
                                         "DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{free_port()}"})
    assert result.exit_code == 1 and time.monotonic() - started < 15  # the configured wait, not Dask's 30 s
    assert "Error: cannot reach the Dask scheduler at tcp://127.0.0.1:" in result.output
    assert "Traceback" not in result.output
