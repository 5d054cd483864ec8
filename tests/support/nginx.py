"""deploy/nginx.conf run for real on 127.0.0.1 in front of a Gunicorn socket (tests and benches)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.gunicorn import stop_process
from tests.support.servers import ServerUnavailable, free_port

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


BALANCER = REPO / "deploy" / "balancer.conf"


def render(upstream: str, port: int, prefix: Path, conf: Path = CONF) -> str:
    """deploy/nginx.conf (or ``conf``) with its placeholders filled in, as deploy/start.sh does.
    For deploy/balancer.conf ``upstream`` is a list of host:port."""
    text = conf.read_text()
    servers = upstream if isinstance(upstream, list) else [upstream]
    lines = "\n".join(f"        server {s} max_fails=1 fail_timeout=2s;" for s in servers)
    for name, value in (("__PORT__", f"127.0.0.1:{port}"), ("__UPSTREAMS__", lines), ("__UPSTREAM__", upstream
                        if isinstance(upstream, str) else ""), ("__PREFIX__", str(prefix))):
        text = text.replace(name, value)
    return text


class NginxProxy:
    """nginx with deploy/nginx.conf, listening on a free port, passing to ``upstream`` (unix:PATH); with
    ``conf=BALANCER``, deploy/balancer.conf spreading over ``upstream``, a list of host:port."""

    def __init__(self, prefix: Path, upstream, conf: Path = CONF):
        self.binary = nginx_binary()
        if self.binary is None:
            raise ServerUnavailable("nginx not found (apt-get install nginx; README Set up)")
        self.prefix = Path(prefix)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(render(upstream, self.port, self.prefix, conf))
        self.log = self.prefix / "nginx.out"
        self.proc = None

    def start(self, timeout: float = 10) -> "NginxProxy":
        # As root nginx would run its workers as "nobody", who cannot reach a test's temp directory.
        directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        with open(self.log, "wb") as out:
            cmd = [self.binary, "-e", "stderr", "-p", str(self.prefix), "-c", str(self.conf), "-g", directives]
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
