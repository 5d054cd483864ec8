"""Slow clients against each way of serving the API: who keeps answering, and at what throughput.

One run, the same bundle and store (bench_serving's quick 24h bundle) for every setup:

  sync          Gunicorn, 2 sync workers, clients connect to it directly (the default until now);
  gthread       Gunicorn, 2 gthread workers x GUNICORN_THREADS (default 8), direct;
  gevent        Gunicorn, 2 gevent workers, direct (only when gevent is installed: pip install gevent);
  nginx+sync    deploy/nginx.conf in front of 2 sync workers on a unix socket (what deploy/start.sh runs).

Per setup: throughput of cached POST /api/v1/predict (wrk -t2 -c32), then an attack of --slow
connections held for --hold seconds (a third send their headers a byte a second — slowloris —, a
third send full headers and drip their body, a third send a TLS ClientHello to the plain-HTTP port
and wait), during which GET /api/health is probed every 0.25 s on a new connection (answered
within 2 s counts) and wrk measures /predict throughput again. Gunicorn's own count of
"WORKER TIMEOUT" (a worker killed because a client held it) closes the row. Prints a table.

    .venv/bin/python -m bench.bench_slow_clients [--slow 48] [--hold 45] [--seconds 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.bench_serving import ASSETS, DEFAULT_DATA, PREDICT, Gunicorn, prepare, wait_ok, wrk
from tests.support.nginx import NginxProxy

TLS_HELLO = bytes.fromhex("16030100f8010000f40303") + bytes(32) + b"\x00"  # a ClientHello's first bytes


class SlowClients:
    """``n`` connections that never finish their request, fed one byte a second until ``stop``."""

    def __init__(self, host: str, port: int, n: int):
        self.host, self.port, self.n = host, port, n
        self.socks: list[tuple[socket.socket, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self.refused = 0

    def start(self) -> None:
        for i in range(self.n):
            kind = ("headers", "body", "tls")[i % 3]
            try:
                sock = socket.create_connection((self.host, self.port), timeout=5)
                if kind == "headers":
                    sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: a\r\n")
                elif kind == "body":
                    sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 10000\r\n\r\n{")
                else:
                    sock.sendall(TLS_HELLO)
                self.socks.append((sock, kind))
            except OSError:
                self.refused += 1
        self._thread.start()

    def _feed(self) -> None:
        while not self._stop.wait(1.0):
            for sock, kind in list(self.socks):
                if kind == "tls":
                    continue
                try:
                    sock.sendall(b"X-a: b\r\n" if kind == "headers" else b" ")
                except OSError:
                    self.socks.remove((sock, kind))  # the server hung up on it: fine

    def stop(self) -> int:
        """Close every connection; returns how many the server had not closed by itself."""
        self._stop.set()
        self._thread.join(timeout=5)
        alive = len(self.socks)
        for sock, _ in self.socks:
            sock.close()
        return alive


def probe(base: str, seconds: float) -> dict:
    """GET /api/health every 0.25 s on a new connection: how many answered 200 within 2 s."""
    answered, latencies, tried = 0, [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tried += 1
        started = time.monotonic()
        try:
            if requests.get(base + "/api/health", timeout=2).status_code == 200:
                answered += 1
                latencies.append(time.monotonic() - started)
        except requests.RequestException:
            pass
        time.sleep(max(0.0, 0.25 - (time.monotonic() - started)))
    return {"tried": tried, "answered": answered, "max_s": max(latencies, default=float("nan")),
            "median_ms": statistics.median(latencies) * 1e3 if latencies else float("nan")}


def attack(base: str, host: str, port: int, args, logdir: Path) -> dict:
    slow = SlowClients(host, port, args.slow)
    slow.start()
    time.sleep(2)
    result = {}
    prober = threading.Thread(target=lambda: result.update(probe(base, args.hold)))
    prober.start()
    time.sleep(args.hold / 3)
    try:
        loaded = wrk(base + "/api/v1/predict", PREDICT, args.seconds, 8, logdir, threads=2)
    except subprocess.SubprocessError:
        loaded = {"rps": 0.0, "non2xx": 0, "socket_errors": "wrk failed"}
    prober.join()
    result["alive"] = slow.stop()
    result["refused"] = slow.refused
    result["rps"] = loaded["rps"]
    return result


def run_setup(name: str, env: dict, args, logdir: Path) -> dict:
    nginx = None
    if name == "nginx+sync":
        socket_path = logdir / "gunicorn.sock"
        socket_path.unlink(missing_ok=True)
        g = Gunicorn("flask_api:app", env, logdir, name, bind=f"unix:{socket_path}")
        nginx = NginxProxy(logdir / "nginx", f"unix:{socket_path}")
        nginx.start()
        base, port = nginx.base, nginx.port
    else:
        extra = {"gthread": {"GUNICORN_THREADS": str(args.threads)}, "gevent": {"GUNICORN_WORKER_CLASS": "gevent"}}
        g = Gunicorn("flask_api:app", dict(env, **extra.get(name, {})), logdir, name)
        base, port = g.base, g.port
    try:
        wait_ok(base)
        wrk(base + "/api/v1/predict", PREDICT, 3, 32, logdir, threads=2)  # warm-up: both workers loaded
        quiet = wrk(base + "/api/v1/predict", PREDICT, args.seconds, 32, logdir, threads=2)
        under = attack(base, "127.0.0.1", port, args, logdir)
    finally:
        g.stop()
        if nginx is not None:
            nginx.stop()
    timeouts = Path(g.out.name).read_text(errors="replace").count("WORKER TIMEOUT")
    return {"quiet_rps": quiet["rps"], "quiet_p99": quiet["p99"], "timeouts": timeouts, **under}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--slow", type=int, default=48, help="slow connections in the attack")
    parser.add_argument("--hold", type=float, default=45, help="seconds the attack lasts (Gunicorn's timeout is 30)")
    parser.add_argument("--seconds", type=float, default=8, help="each wrk run")
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    parser.add_argument("--setups", default="sync,gthread,gevent,nginx+sync")
    parser.add_argument("--workdir", type=Path, help="keep store and bundle here (reused when present)")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            sys.exit(f"{tool} not found: apt-get install -y {tool}")
    setups = args.setups.split(",")
    if "gevent" in setups and importlib.util.find_spec("gevent") is None:
        print("gevent is not installed (pip install gevent): its row is left out")
        setups.remove("gevent")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_slow_"))
    logdir = workdir / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    try:
        url, models, version = prepare(workdir, args.data_dir, ASSETS, 120, True, 2)
        env = {"DATABASE_URL": url, "MODELS_DIR": str(models), "MARKET_DATA_SOURCE": "csv",
               "RATELIMIT_DEFAULT": "100000000 per minute", "LOG_LEVEL": "info", "CACHE_ENABLED": "1",
               "WEB_CONCURRENCY": "2"}
        rows = {}
        for name in setups:
            rows[name] = run_setup(name, env, args, logdir)
            print(f"{name}: {rows[name]}", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nbundle {version}; 2 workers; {args.slow} slow connections held {args.hold:g} s "
          f"(headers drip / body drip / TLS hello); wrk -t2, {args.seconds:g} s runs; health probed every 0.25 s")
    print(f"{'setup':<12} {'req/s quiet':>11} {'p99 ms':>7} {'req/s attacked':>14} {'health answered':>16} "
          f"{'slowest s':>9} {'worker timeouts':>15} {'slow conns open':>15}")
    for name, r in rows.items():
        print(f"{name:<12} {r['quiet_rps']:11.0f} {r['quiet_p99']:7.1f} {r['rps']:14.0f} "
              f"{r['answered']:>7}/{r['tried']:<8} {r['max_s']:9.2f} {r['timeouts']:15} {r['alive']:15}")


if __name__ == "__main__":
    main()
