"""Soak: minutes of steady mixed traffic under Gunicorn on PostgreSQL + Redis while jobs and deploys run.

Prints figures, asserts nothing. One run:

1. starts throwaway PostgreSQL and Redis servers on 127.0.0.1 (tests/support/servers.py: the
   Debian packages' programs, not their services) and a fake Binance on 127.0.0.1 serving the
   shared candles (tests/support/fake_market.py);
2. ingests --days + 60 days of --assets up to a cut three days before the shared data ends, and
   trains two versions (full ensemble unless --quick; different seeds); production = the first,
   challenger = the second, with a share of clients on the challenger;
3. starts Gunicorn (gunicorn.conf.py, 2 sync workers) with DATABASE_URL on PostgreSQL,
   CACHE_REDIS_URL and the rate-limit storage on Redis, and sends --rate requests per second on
   a fixed schedule (open loop: a slow answer does not slow the sender) for --minutes, mixing
   predict (cached and not), batch, analysis, history, models, performance and health;
4. meanwhile ``python -m crypto_predictor refresh`` runs every --refresh-every seconds against the
   fake Binance with its clock one hour later each time (so new candles arrive and cache keys
   move), ``verify`` runs after each refresh, and ``deploy_model.py`` switches production between
   the two versions every --deploy-every seconds.

Reported: requests sent, failed (any non-200 or connection error), p50/p99 overall and per
endpoint, job and deploy outcomes, which versions answered, and RSS per worker at minute 1 and
at the end (growth target < 10%).

    .venv/bin/python -m bench.soak [--minutes 5] [--rate 40] [--quick] [--assets bitcoin,ethereum,litecoin]
        [--in-process-cache] [--long-analysis]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import requests

from bench.bench_serving import DEFAULT_DATA, REPO, Gunicorn

TIMEFRAMES = ("1h", "24h")
CUT = pd.Timestamp("2021-09-28T00:00:00Z")  # the shared data ends 2021-09-30T23:00Z: ~70 hours to refresh
HOUR = pd.Timedelta(hours=1)


def prepare(url: str, models: Path, data_dir: Path, assets, days: int, quick: bool) -> list[str]:
    """Store filled up to CUT; two trained versions. Returns [first, second]."""
    from crypto_predictor.registry.aliases import set_alias
    from crypto_predictor.training.pipeline import TrainOptions, train_run
    from tests.support.slices import fill_store

    fill_store(url, data_dir, assets, end=CUT - HOUR, last_days=days + 60)
    versions = []
    for seed in (1, 2):
        started = time.perf_counter()
        version, _ = train_run(url, list(assets), list(TIMEFRAMES), TrainOptions(quick=quick, days=days, seed=seed),
                               models, n_jobs=2)
        versions.append(version)
        print(f"trained {version} (quick={quick}, seed {seed}) in {time.perf_counter() - started:.0f} s", flush=True)
    set_alias(models, "production", versions[0])
    set_alias(models, "challenger", versions[1])
    return versions


def fake_binance(data_dir: Path, assets):
    from crypto_predictor.market.csvdir import CsvSource
    from crypto_predictor.symbols import resolve
    from tests.support.fake_market import FakeMarket

    source = CsvSource(data_dir)
    pairs = {resolve(a).pair: source.fetch(a, start=CUT - 10 * 24 * HOUR).candles for a in assets}
    return FakeMarket(pairs, {}, int(CUT.value // 1_000_000)).start()


class Traffic:
    """Open-loop mixed requests at a fixed rate; records (elapsed, endpoint, status, ms, version)."""

    def __init__(self, base: str, assets, rate: float, seconds: float, long_analysis: bool = False):
        self.base, self.assets, self.rate, self.seconds = base, list(assets), rate, seconds
        self.long_analysis = long_analysis  # analysis of 1-365 days of hourly bars: answers up to ~2 MB
        self.records: list[tuple] = []
        self.errors: collections.Counter = collections.Counter()
        self._local = threading.local()
        self._lock = threading.Lock()
        self.rng = random.Random(7)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
        return self._local.s

    def _pick(self):
        r, a = self.rng.random(), self.rng.choice(self.assets)
        client = {"X-Client-Id": f"client-{self.rng.randrange(200)}"}
        if r < 0.45:
            body = {"symbol": a, "timeframe": self.rng.choice(TIMEFRAMES)}
            return "predict", "POST", "/api/v1/predict", body, client
        if r < 0.55:
            return "batch", "POST", "/api/v1/predict/batch", {"symbols": self.assets, "timeframe": "1h"}, client
        if r < 0.65:
            query = (f"days={self.rng.randint(1, 365)}&interval=1h" if self.long_analysis else "days=30&interval=4h")
            return "analysis", "GET", f"/api/v1/analysis/{a}?{query}", None, client
        if r < 0.75:
            return "history", "GET", f"/api/v1/predictions/{a}/history?limit=20", None, client
        if r < 0.82:
            return "models", "GET", "/api/v1/models", None, client
        if r < 0.88:
            return "performance", "GET", "/api/v1/models/performance/production", None, client
        return "health", "GET", "/api/health", None, client

    def _send(self, t0: float, name, method, path, body, headers):
        started = time.perf_counter()
        status, version = 0, None
        try:
            resp = self._session().request(method, self.base + path, json=body, headers=headers, timeout=30)
            status = resp.status_code
            if name == "predict" and status == 200:
                version = resp.json()["data"]["model_version"]
        except requests.RequestException as exc:
            with self._lock:
                self.errors[type(exc).__name__] += 1
        ms = (time.perf_counter() - started) * 1e3
        with self._lock:
            self.records.append((started - t0, name, status, ms, version))

    def run(self) -> None:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=32) as pool:
            i = 0
            while True:
                due = t0 + i / self.rate
                if due - t0 >= self.seconds:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self._send, t0, *self._pick())
                i += 1


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_cmd(args: list[str], env: dict, first_line: bool = False) -> tuple[int, str, float]:
    """(exit code, the output's last line (or first), seconds)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()] or [""]
    return done.returncode, lines[0 if first_line and done.returncode == 0 else -1], time.perf_counter() - started


def pct(values, q) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--assets", default="bitcoin,ethereum,litecoin")
    parser.add_argument("--days", type=int, default=90, help="train on the newest N days before the cut")
    parser.add_argument("--quick", action="store_true", help="tiny model settings")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=float, default=40, help="requests per second")
    parser.add_argument("--refresh-every", type=float, default=20, help="seconds between refresh (+verify) runs")
    parser.add_argument("--deploy-every", type=float, default=60, help="seconds between production switches")
    parser.add_argument("--in-process-cache", action="store_true",
                        help="each worker's own response cache instead of Redis (what memory growth is about)")
    parser.add_argument("--long-analysis", action="store_true",
                        help="analysis requests ask for 1-365 days of hourly bars (large answers)")
    args = parser.parse_args()
    assets = args.assets.split(",")

    from tests.support.servers import PostgresServer, RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="soak_"))
    (workdir / "logs").mkdir()
    pg = redis = market = web = None
    try:
        pg, redis = PostgresServer().start(), RedisServer().start()
        url, models = pg.create_database("soak"), workdir / "models"
        market = fake_binance(args.data_dir, assets)
        versions = prepare(url, models, args.data_dir, assets, args.days, args.quick)
        env = {"DATABASE_URL": url, "MODELS_DIR": str(models), "MARKET_DATA_SOURCE": "csv",
               "MAX_DATA_AGE_HOURS": "0", "CACHE_REDIS_URL": "" if args.in_process_cache else redis.url,
               "RATELIMIT_STORAGE_URI": redis.url,
               "RATELIMIT_DEFAULT": "100000000 per minute", "AB_CHALLENGER_SHARE": "0.2",
               "MODEL_POLL_SECONDS": "1", "LOG_LEVEL": "warning"}
        web = Gunicorn("flask_api:app", env, workdir / "logs", "soak")
        print(f"gunicorn ready in {web.wait_ok('/api/health'):.1f} s; workers {web.worker_pids()}", flush=True)
        job_env = {**os.environ, **env, "MARKET_DATA_SOURCE": "binance", "BINANCE_BASE_URL": market.url,
                   "FEAR_GREED_REFRESH": "0",
                   "REFRESH_ASSETS": ",".join(assets)}

        seconds = args.minutes * 60
        traffic = Traffic(web.base, assets, args.rate, seconds, args.long_analysis)
        stop = threading.Event()
        jobs, deploys, rss = [], [], collections.defaultdict(list)  # rss: pid -> [(elapsed, MB)]
        t0 = time.perf_counter()

        def refresher():
            now = CUT
            while not stop.wait(args.refresh_every):
                now += HOUR
                market.now_ms = int(now.value // 1_000_000) + 30_000
                for name in ("refresh", "verify"):
                    rc, last, took = run_cmd(["-m", "crypto_predictor", name, "--as-of", now.isoformat()], job_env,
                                             first_line=name == "verify")
                    jobs.append((time.perf_counter() - t0, name, rc, took, last))

        def deployer():
            turn = 1
            while not stop.wait(args.deploy_every):
                rc, last, took = run_cmd(["deploy_model.py", "--version", versions[turn % 2],
                                          "--models-dir", str(models)], job_env)
                deploys.append((time.perf_counter() - t0, versions[turn % 2], rc, last))
                turn += 1

        def sampler():
            while not stop.wait(5):
                for pid in web.worker_pids():
                    value = rss_mb(pid)
                    if value is not None:
                        rss[pid].append((time.perf_counter() - t0, value))

        helpers = [threading.Thread(target=f, daemon=True) for f in (refresher, deployer, sampler)]
        for h in helpers:
            h.start()
        traffic.run()
        stop.set()
        for h in helpers:
            h.join(timeout=120)
        final_pids = web.worker_pids()
    finally:
        for thing in (web, market, redis, pg):
            if thing is not None:
                thing.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    recs = traffic.records
    failed = [r for r in recs if r[2] != 200]
    cache_note = " (response cache in-process)" if args.in_process_cache else ""
    print(f"\nsoak: {args.minutes:g} min at {args.rate:g} req/s (open loop), 2 sync workers, "
          f"PostgreSQL + Redis{cache_note}, assets {', '.join(assets)}, versions {', '.join(versions)}")
    print(f"  requests {len(recs)}, failed {len(failed)} "
          f"({dict(collections.Counter(r[2] for r in failed))}; connection errors {dict(traffic.errors)})")
    print(f"  all: p50 {pct([r[3] for r in recs], .5):.1f} ms, p99 {pct([r[3] for r in recs], .99):.1f} ms, "
          f"max {max(r[3] for r in recs):.1f} ms")
    by = collections.defaultdict(list)
    for r in recs:
        by[r[1]].append(r[3])
    for name, ms in sorted(by.items()):
        print(f"    {name:<12} n={len(ms):5d}  p50 {statistics.median(ms):7.1f} ms  p99 {pct(ms, .99):7.1f} ms")
    served = collections.Counter(r[4] for r in recs if r[4])
    print(f"  predict answered by version: {dict(served)}")
    for name in ("refresh", "verify"):
        runs = [j for j in jobs if j[1] == name]
        ok = sum(1 for j in runs if j[2] == 0)
        took = [j[3] for j in runs]
        print(f"  {name}: {ok}/{len(runs)} runs exit 0, {statistics.median(took) if took else float('nan'):.1f} s "
              f"median; last: {runs[-1][4] if runs else '-'}")
    for j in jobs:
        if j[2] != 0:
            print(f"    failed {j[1]} at {j[0]:.0f} s: {j[4]}")
    print(f"  deploys: {sum(1 for d in deploys if d[2] == 0)}/{len(deploys)} exit 0 "
          f"({', '.join(f'{d[0]:.0f}s->{d[1]}' for d in deploys)})")
    print(f"  worker pids at end {final_pids} (restarted workers would show new pids)")
    for pid, samples in sorted(rss.items()):
        first = min(samples, key=lambda s: abs(s[0] - 60))
        last = samples[-1]
        growth = (last[1] - first[1]) / first[1] * 100
        print(f"  RSS worker {pid}: {first[1]:.0f} MB at {first[0]:.0f} s -> {last[1]:.0f} MB at {last[0]:.0f} s "
              f"({growth:+.1f}%; target < 10%)")


if __name__ == "__main__":
    main()
