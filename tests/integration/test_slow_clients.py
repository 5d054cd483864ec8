"""Slow clients against the production entry point (deploy/start.sh: nginx in front of Gunicorn).

Connections that drip their headers or their body a byte a second, or send a TLS hello to the
plain-HTTP port, tie up a sync worker each for Gunicorn's whole timeout when they reach it
directly (the control case below proves the attack is real); behind nginx, health and
predictions keep answering and no worker is killed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.bundles import quick_production
from tests.support.gunicorn import REPO, GunicornServer, stop_process, tail
from tests.support.nginx import NginxProxy, nginx_binary
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

TLS_HELLO = bytes.fromhex("16030100f8010000f40303") + bytes(32) + b"\x00"
WORKER_TIMEOUT = 4  # Gunicorn's timeout here: a held sync worker is killed after this long
TOKEN = "t" * 40


class SlowClients:
    """``n`` connections that never finish their request: header drip, body drip, TLS hello."""

    def __init__(self, port: int, n: int):
        self.socks = []
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            kind = ("headers", "body", "tls")[i % 3]
            sock.sendall({"headers": b"POST /api/v1/predict HTTP/1.1\r\nHost: a\r\n",
                          "body": b"POST /api/v1/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n{",
                          "tls": TLS_HELLO}[kind])
            self.socks.append((sock, kind))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self):
        while not self._stop.wait(1.0):
            for sock, kind in self.socks:
                if kind != "tls":
                    try:
                        sock.sendall(b"X-a: b\r\n" if kind == "headers" else b" ")
                    except OSError:
                        pass

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for sock, _ in self.socks:
            sock.close()


def probe(base: str, seconds: float) -> list:
    """(status or error, seconds) of GET /api/health and a cached POST /predict, every 0.25 s."""
    results, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        for method, path, body in (("GET", "/api/health", None), ("POST", "/api/v1/predict", {"symbol": "BTC",
                                                                                               "timeframe": "1h"})):
            started = time.monotonic()
            try:
                status = requests.request(method, base + path, json=body, timeout=2).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            results.append((status, time.monotonic() - started))
        time.sleep(0.25)
    return results


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("slow_clients")
    url = f"sqlite:///{root / 'store.db'}"
    models = root / "models"
    quick_production(url, models, data_dir, last_days=30)
    return root, {"DATABASE_URL": url, "MODELS_DIR": str(models), "MARKET_DATA_SOURCE": "csv",
                  "RATELIMIT_ENABLED": "0", "LOG_LEVEL": "warning", "WEB_CONCURRENCY": "2",
                  "GUNICORN_TIMEOUT": str(WORKER_TIMEOUT), "ADMIN_TOKEN": TOKEN}


def _need_nginx() -> None:
    if nginx_binary() is None:
        if os.environ.get("CI"):  # CI installs it: its absence is a failure there
            pytest.fail("nginx not found: install nginx (README Set up)")
        pytest.skip("install nginx (README Set up)")


@pytest.fixture(scope="module")
def behind_nginx(served):
    """deploy/start.sh as the Docker image runs it, on a free port."""
    _need_nginx()
    root, env = served
    port = free_port()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", ""), "/usr/sbin"])
    # As root nginx runs its workers as "nobody", who cannot enter pytest's 0700 temp directories.
    run_dir = Path(tempfile.mkdtemp(prefix="cp-nginx-"))
    run_dir.chmod(0o755)
    env = dict(os.environ, **env, PORT=str(port), NGINX_RUN_DIR=str(run_dir), PATH=path)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    output = root / "start.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(["bash", str(REPO / "deploy" / "start.sh")], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(base + "/api/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail(f"deploy/start.sh did not come up:\n{tail(output)}")
        time.sleep(0.2)
    yield base, port, output
    stop_process(proc)
    shutil.rmtree(run_dir, ignore_errors=True)
    assert proc.returncode == 0, tail(output)  # both stopped gracefully on SIGTERM


def test_slow_clients_do_not_reach_the_workers_behind_nginx(behind_nginx):
    base, port, output = behind_nginx
    slow = SlowClients(port, 24)
    try:
        time.sleep(1)
        results = probe(base, WORKER_TIMEOUT * 2.5)  # long enough for a held worker to be killed
    finally:
        slow.close()
    failed = [(status, round(s, 2)) for status, s in results if status != 200 or s > 2]
    assert not failed, failed
    assert len(results) >= 20
    assert "WORKER TIMEOUT" not in output.read_text(errors="replace")


def test_the_same_clients_starve_gunicorn_served_directly(served):
    """Control: without the proxy the attack above does take the sync workers (so the test means something)."""
    root, env = served
    direct = GunicornServer(root / "direct", env)
    (root / "direct").mkdir()
    direct.start()
    try:
        slow = SlowClients(direct.port, 24)
        try:
            results = probe(direct.base, WORKER_TIMEOUT * 2.5)
        finally:
            slow.close()
    finally:
        direct.stop()
    assert any(status != 200 for status, _ in results)
    assert "WORKER TIMEOUT" in direct.output.read_text(errors="replace")


def test_nginx_answers_its_own_refusals_in_the_api_shape(behind_nginx):
    base, port, _ = behind_nginx
    big = requests.post(base + "/api/v1/predict", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert big.status_code == 413 and big.headers["Content-Type"] == "application/json"
    assert big.json()["error"]["code"] == "payload_too_large"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(TLS_HELLO + b"\r\n\r\n")
        answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400" and b'"code":"bad_request"' in body
    long_line = requests.get(base + "/api/" + "x" * 20000, timeout=10)
    assert long_line.status_code == 414 and long_line.json()["error"]["code"] == "request_line_too_long"
    big_headers = requests.get(base + "/api/health", headers={"X-Big": "y" * 20000}, timeout=10)
    assert big_headers.status_code == 431 and big_headers.json()["error"]["code"] == "headers_too_large"
    # the app's own answers pass through unchanged, 64 KiB limit and all
    app_413 = requests.post(base + "/api/v1/predict", data=b"{" + b" " * 70000 + b"}", timeout=10)
    assert app_413.status_code == 413 and app_413.json()["status"] == "error"


def test_nginx_with_gunicorn_down_answers_503_json(tmp_path):
    """Gunicorn not (yet) listening: a JSON 503 with Retry-After, not nginx's HTML 502."""
    _need_nginx()
    proxy = NginxProxy(tmp_path / "nginx", f"unix:{tmp_path / 'nobody-listens.sock'}").start()
    try:
        response = requests.get(proxy.base + "/api/health", timeout=10)
    finally:
        proxy.stop()
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "service_unavailable"


def test_the_client_address_reaches_the_app_through_nginx(behind_nginx):
    """The rate limit keys on the client address: behind nginx it must not be the socket's (empty)."""
    base, _, _ = behind_nginx
    info = requests.get(base + "/api/v1/admin/request-info", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=5).json()["data"]
    assert info["remote_addr"] == "127.0.0.1" and info["proxy_fix_x_for"] == 1
    assert info["x_forwarded_for"] == "127.0.0.1"
