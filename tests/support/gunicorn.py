"""Real Gunicorn serving flask_api:app on 127.0.0.1 for integration tests.

The access log records, per request, the pid of the worker that answered and the request id
the client sent (echoed in X-Request-Id), so a test can tell which worker served what.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
# %(p)s is the answering worker's pid, the second field the request id.
ACCESS_LOG_FORMAT = "%(p)s %({x-request-id}o)s %(s)s"


def gunicorn_cmd(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("gunicorn")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "gunicorn"]
    # Command-line settings override gunicorn.conf.py, whose default bind is 0.0.0.0.
    return base + ["-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                   "--access-logformat", ACCESS_LOG_FORMAT, "flask_api:app"]


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # graceful: workers finish their request
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def tail(path: Path, n: int = 4000) -> str:
    return path.read_bytes()[-n:].decode(errors="replace") if path.exists() else "(no output)"


def worker_of(access_log: Path) -> dict:
    """request id -> pid of the worker that answered it."""
    out = {}
    for line in access_log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[1]] = int(parts[0].strip("<>"))  # %(p)s is "<pid>"
    return out


class GunicornServer:
    """Gunicorn with gunicorn.conf.py and ``env`` (added to os.environ) until ``stop``."""

    def __init__(self, root: Path, env: dict, port: int | None = None):
        self.root = Path(root)
        self.port = free_port() if port is None else port
        self.base = f"http://127.0.0.1:{self.port}"
        self.access_log = self.root / "access.log"
        self.output = self.root / "gunicorn.out"
        self.env = dict(os.environ, **env, PORT=str(self.port), GUNICORN_ACCESSLOG=str(self.access_log))
        if "PROMETHEUS_MULTIPROC_DIR" not in env:
            self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = None

    def start(self, timeout: float = 60) -> "GunicornServer":
        """Start and wait until /api/health answers 200; fails the test with Gunicorn's output if not."""
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(gunicorn_cmd(self.port), cwd=REPO, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.proc.returncode}:\n{tail(self.output)}")
            try:
                if requests.get(f"{self.base}/api/health", timeout=5).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or busy loading models
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"/api/health never answered 200:\n{tail(self.output)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
