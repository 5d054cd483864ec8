"""A cached /predict against the bare endpoint inside one process, without HTTP: what the app
itself adds per request (hooks, log line, limiter, cache token, response), in microseconds.

Calls each app's WSGI callable directly with one prepared POST (the same body wrk sends in
bench_serving), alternating bare and app in rounds, and prints the best per-request time of
each with their difference. ``--profile`` prints the app's cProfile instead (its totals are
inflated by the profiler; compare functions, not absolute times).

    .venv/bin/python -m bench.bench_request_path [--calls 20000] [--rounds 5] [--workdir DIR]
        [--env LOG_LEVEL=warning] [--profile]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_serving import ASSETS, DEFAULT_DATA, PREDICT, prepare

BODY = json.dumps(PREDICT).encode()


def environ() -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/predict", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(BODY)), "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "wrk", "wsgi.input": io.BytesIO(BODY),
            "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}


def caller(app):
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call() -> bytes:
        chunks = app(environ(), start_response)
        try:
            return b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()

    return call, statuses


def best_us(call, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per round and app")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="store and bundle (bench_serving's; reused when present)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="app environment; repeatable")
    parser.add_argument("--profile", action="store_true", help="cProfile the app's calls instead of timing them")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_request_path_"))
    workdir.mkdir(parents=True, exist_ok=True)
    url, models, version = prepare(workdir, DEFAULT_DATA, list(ASSETS), 120, True, 2)
    log = open(workdir / "request_path.log", "w")  # the JSON lines go to a file, as under Gunicorn
    sys.stderr, stderr = log, sys.stderr  # the app's handler binds the stream it finds at start
    os.environ.update({"DATABASE_URL": url, "MODELS_DIR": str(models), "MARKET_DATA_SOURCE": "csv",
                       "RATELIMIT_DEFAULT": "100000000 per minute", "LOG_LEVEL": "info", "CACHE_ENABLED": "1"})
    os.environ.update(item.split("=", 1) for item in args.env)
    try:
        from bench.bare_app import app as bare_app
        from crypto_predictor.api import create_app

        app = create_app()
        apps = {"bare": caller(bare_app.wsgi_app), "app": caller(app.wsgi_app)}
        for call, _ in apps.values():
            for _ in range(500):  # warm: the service starts, the cache fills
                call()
        answer = json.loads(apps["app"][0]())
    finally:
        sys.stderr = stderr
    if not answer.get("metadata", {}).get("cache_hit") or apps["app"][1][-1] != "200 OK":
        sys.exit(f"the app's answer is not a cached 200: {apps['app'][1][-1]} {answer}")
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        call = apps["app"][0]
        profile.runcall(lambda: [call() for _ in range(args.calls)])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
        return
    times = {"bare": [], "app": []}
    for _ in range(args.rounds):
        for name, (call, _) in apps.items():
            times[name].append(best_us(call, args.calls))
    bare, cached = min(times["bare"]), min(times["app"])
    print(f"bundle {version}; {args.rounds} rounds x {args.calls} calls; best round per app")
    print(f"  bare endpoint : {bare:6.1f} us/request")
    print(f"  cached predict: {cached:6.1f} us/request (+{cached - bare:.1f} us, {cached / bare:.2f} x bare)")


if __name__ == "__main__":
    main()
