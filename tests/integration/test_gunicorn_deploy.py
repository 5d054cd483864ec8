"""A deploy under real Gunicorn: the alias switch reaches both workers with no failed request.

Two quick bundles (v1 linear, v2 xgboost, BTC 1h on the last 90 days of the shared candles)
are trained into a tmp model store, production -> v1, and Gunicorn (2 sync workers,
127.0.0.1, gunicorn.conf.py) serves flask_api:app. Two client threads post predictions
continuously while ``deploy_model.py`` (a real process) moves production to v2 and later back
to v1. Gunicorn's access log records which worker pid answered each request id, so the test
can tell that *both* workers switched, in place (no worker restarted).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.gunicorn import REPO, GunicornServer, stop_process, worker_of
from tests.support.slices import fill_store

pytestmark = pytest.mark.slow

POLL_SECONDS = 0.5
# A request that starts this long after deploy_model.py returned must see the new version:
# one poll interval plus loading a small bundle, with room for a busy 2-core machine.
SETTLE_SECONDS = 3.0
STEADY_SECONDS = 1.5  # of traffic on the new version before the next step
LOAD_LIMIT_SECONDS = 40.0  # the client threads stop by themselves after this
BODY = {"symbol": "BTC", "timeframe": "1h"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("gunicorn_deploy")
    url = f"sqlite:///{root / 'store.db'}"
    fill_store(url, data_dir, ("bitcoin", "ethereum"), last_days=90)  # ethereum: bitcoin's context asset
    models = root / "models"
    versions = [train_run(url, ["bitcoin"], ["1h"], TrainOptions(kinds=(kind,), quick=True, seed=seed),
                          models, n_jobs=1)[0]
                for kind, seed in (("linear", 1), ("xgboost", 2))]
    set_alias(models, "production", versions[0])
    return root, url, models, versions


@pytest.fixture(scope="module")
def server(bundles):
    root, url, models, versions = bundles
    gunicorn = GunicornServer(root, dict(
        WEB_CONCURRENCY="2", GUNICORN_THREADS="1", DATABASE_URL=url, MODELS_DIR=str(models),
        MARKET_DATA_SOURCE="csv", MODEL_POLL_SECONDS=str(POLL_SECONDS), RATELIMIT_ENABLED="0",
        CACHE_ENABLED="1", LOG_LEVEL="warning"))
    try:
        gunicorn.start()
        yield gunicorn.base, models, versions, gunicorn.access_log, gunicorn.proc
    finally:
        gunicorn.stop()


@dataclass
class Result:
    request_id: str
    started: float
    ended: float
    status: int | None
    version: str | None
    error: str | None = None


def _load(base: str, name: str, results: list, stop: threading.Event) -> None:
    """Sequential predictions until ``stop`` is set or LOAD_LIMIT_SECONDS pass."""
    session = requests.Session()
    end = time.monotonic() + LOAD_LIMIT_SECONDS
    i = 0
    while not stop.is_set() and time.monotonic() < end:
        rid = f"{name}-{i}"
        i += 1
        t0 = time.monotonic()
        try:
            r = session.post(f"{base}/api/v1/predict", json=BODY, headers={"X-Request-Id": rid}, timeout=10)
            version = (r.json().get("data") or {}).get("model_version") if r.status_code == 200 else None
            results.append(Result(rid, t0, time.monotonic(), r.status_code, version,
                                  None if r.status_code == 200 else r.text[:300]))
        except Exception as exc:  # a reset connection is a failed request too
            results.append(Result(rid, t0, time.monotonic(), None, None, repr(exc)))


def _deploy(models: Path, version: str) -> tuple[float, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "deploy_model.py", "--version", version, "--alias", "production",
                           "--models-dir", str(models)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"-> {version}" in done.stdout
    return start, time.monotonic()


def _wait_for(results: list, version: str, since: float, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.version == version and r.started >= since for r in list(results)):
            return True
        time.sleep(0.05)
    return False


def test_deploy_switches_every_worker_without_failed_requests(server):
    base, models, (v1, v2), access_log, proc = server
    results: list[Result] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(base, f"c{k}", results, stop), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(STEADY_SECONDS)
        steps = []
        for target in (v2, v1):
            started, done = _deploy(models, target)
            assert _wait_for(results, target, done, SETTLE_SECONDS + 5), f"{target} never served"
            time.sleep(max(0.0, done + SETTLE_SECONDS + STEADY_SECONDS - time.monotonic()))
            steps.append((target, started, done))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert proc.poll() is None, "gunicorn died during the test"

    failed = [r for r in results if r.status != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed, e.g. {failed[:3]}"
    assert len(results) >= 50, f"too little traffic to judge: {len(results)} requests"

    # Before the first deploy every answer came from v1.
    first_start = steps[0][1]
    before = [r for r in results if r.ended < first_start]
    assert before and {r.version for r in before} == {v1}

    stop_process(proc)  # flushes the access log; the fixture's own stop is then a no-op
    worker = worker_of(access_log)
    all_pids = {worker[r.request_id] for r in results if r.request_id in worker}
    assert len(all_pids) == 2, f"expected the same 2 workers throughout (no restart), saw pids {all_pids}"

    for i, (target, started, done) in enumerate(steps):
        previous = v1 if target == v2 else v2
        next_start = steps[i + 1][1] if i + 1 < len(steps) else float("inf")
        window = [r for r in results if r.started >= started and r.ended < next_start]
        # The switch is one-way: once a worker answers with the target it never goes back.
        stale = [r for r in window if r.version == previous]
        last_stale = max((r.started for r in stale), default=started)
        assert last_stale - done < SETTLE_SECONDS, (
            f"deploy of {target}: a request started {last_stale - done:.2f} s after the deploy still got "
            f"{previous}")
        settled = [r for r in window if r.started >= done + SETTLE_SECONDS]
        assert settled and {r.version for r in settled} == {target}
        by_pid = {}
        for r in window:
            if r.request_id in worker:
                by_pid.setdefault(worker[r.request_id], []).append(r)
        assert set(by_pid) == all_pids, f"deploy of {target}: only workers {set(by_pid)} answered"
        for pid, rows in by_pid.items():
            rows.sort(key=lambda r: r.ended)
            versions = [r.version for r in rows]
            assert versions[-1] == target, f"worker {pid} still serves {versions[-1]} after deploying {target}"
            flip = versions.index(target)
            assert set(versions[flip:]) == {target}, f"worker {pid} flipped back and forth: {versions}"
            # Shown with -s or on failure: how long after deploy_model.py returned this worker switched.
            print(f"{target}: worker {pid} switched {rows[flip].ended - done:+.2f} s after the deploy "
                  f"({len(rows)} requests in the window)")
