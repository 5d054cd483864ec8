"""Two real Gunicorn instances sharing one PostgreSQL (candles and the model store), behind nginx
(deploy/balancer.conf, Debian's nginx): a client posting continuously sees zero failed requests
while a new version is deployed and while one instance is restarted, and both instances serve the
new version within MODEL_POLL_SECONDS.

Each instance has its own MODELS_DIR (as two hosts would): it pulls and verifies what the store's
alias names. Gunicorn's access log of each instance records the request ids it answered.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from crypto_predictor.registry.sql_store import SqlStore
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.gunicorn import REPO, GunicornServer, worker_of
from tests.support.nginx import BALANCER, NginxProxy
from tests.support.servers import ServerUnavailable
from tests.support.slices import fill_store

pytestmark = pytest.mark.slow

POLL_SECONDS = 1.0
SETTLE_SECONDS = POLL_SECONDS + 2.0  # a poll, a pull and a load, on a busy 2-core machine
BODY = {"symbol": "BTC", "timeframe": "1h"}


@dataclass
class Result:
    request_id: str
    started: float
    ended: float
    status: int | None
    version: str | None
    error: str | None = None


def _load(base: str, name: str, results: list, stop: threading.Event) -> None:
    session = requests.Session()
    i = 0
    end = time.monotonic() + 90
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


def _instance(root, env, port=None) -> GunicornServer:
    root.mkdir(parents=True, exist_ok=True)
    return GunicornServer(root, dict(env, MODELS_DIR=str(root / "models")), port=port)


def test_deploy_and_restart_behind_nginx_lose_no_request(tmp_path, postgres_url, data_dir):
    fill_store(postgres_url, data_dir, ("bitcoin", "ethereum"), last_days=60)
    trainer = SqlStore(postgres_url, tmp_path / "trainer")
    v1, v2 = (train_run(postgres_url, ["bitcoin"], ["1h"], TrainOptions(kinds=(kind,), quick=True), trainer.root,
                        n_jobs=1, store=trainer)[0] for kind in ("linear", "xgboost"))
    trainer.set_alias("production", v1)
    env = dict(WEB_CONCURRENCY="1", GUNICORN_THREADS="1", DATABASE_URL=postgres_url, MODEL_STORE_URL=postgres_url,
               MARKET_DATA_SOURCE="csv", MODEL_POLL_SECONDS=str(POLL_SECONDS), RATELIMIT_ENABLED="0",
               PREDICTION_LOG="0", LOG_LEVEL="warning")
    a, b = _instance(tmp_path / "a", env).start(), _instance(tmp_path / "b", env).start()
    a2 = None
    try:
        nginx = NginxProxy(tmp_path / "nginx", [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], conf=BALANCER).start()
    except ServerUnavailable as exc:
        a.stop(), b.stop()
        pytest.skip(str(exc))
    results: list[Result] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(nginx.base, f"c{k}", results, stop), daemon=True)
               for k in range(2)]
    try:
        for t in threads:
            t.start()
        time.sleep(2)
        deployed = subprocess.run([sys.executable, "deploy_model.py", "--version", v2, "--alias", "production",
                                   "--models-dir", str(tmp_path / "deployer"), "--store-url", postgres_url],
                                  cwd=REPO, capture_output=True, text=True, timeout=60)
        assert deployed.returncode == 0, deployed.stderr
        done = time.monotonic()
        time.sleep(SETTLE_SECONDS + 2)

        a.stop()  # SIGTERM: in-flight requests finish; nginx sends the rest to b
        stopped = time.monotonic()
        time.sleep(1)
        a2 = _instance(tmp_path / "a_again", env, port=a.port).start()  # an empty directory: pulls v2
        restarted = time.monotonic()
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        nginx.stop()
        for server in (b, a2):
            if server is not None:
                server.stop()

    failed = [r for r in results if r.status != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed, e.g. {failed[:3]}"
    assert len(results) >= 100, f"too little traffic to judge: {len(results)} requests"
    answered_by = {}
    for name, server in (("a", a), ("b", b), ("a2", a2)):
        answered_by.update({rid: name for rid in worker_of(server.access_log)})
    by = lambda rows, who: [r for r in rows if answered_by.get(r.request_id) == who]  # noqa: E731
    settled = [r for r in results if done + SETTLE_SECONDS <= r.started < stopped]
    for who in ("a", "b"):  # both instances switched, each within MODEL_POLL_SECONDS and a load
        assert by(settled, who) and {r.version for r in by(settled, who)} == {v2}, who
        late = [r.started - done for r in by(results, who) if r.version == v1 and r.started > done]
        assert max(late, default=0) < SETTLE_SECONDS, f"{who} served {v1} {max(late):.2f} s after the deploy"
    assert {r.version for r in results if r.ended < done - 0.5} == {v1}
    during = [r for r in results if stopped <= r.started < restarted]
    assert during and all(answered_by.get(r.request_id) in ("b", "a2") for r in during)
    back = by([r for r in results if r.started >= restarted], "a2")
    assert back and {r.version for r in back} == {v2}  # the restarted instance pulled v2 from the store
    assert (tmp_path / "a_again" / "models" / v2 / "manifest.json").is_file()
    # Shown with -s: the figures behind the verdict.
    switched = {who: min(r.ended for r in by(results, who) if r.version == v2) - done for who in ("a", "b")}
    print(f"{len(results)} requests, 0 failed; answered by a {len(by(results, 'a'))}, b {len(by(results, 'b'))}, "
          f"restarted a {len(back)}; switched to {v2} {switched['a']:+.2f} s (a) and {switched['b']:+.2f} s (b) "
          f"after deploy_model.py returned; {len(during)} requests while a was down")
