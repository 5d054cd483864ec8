"""Serving throughput, latency, memory and start-up under real Gunicorn; prints figures, not a test.

One run: ingest the newest --days (+60 for feature warm-up) of the shared candles for --assets
into a temp SQLite store, train the default kinds (linear, random_forest, xgboost,
ensemble; --quick for tiny settings) for 24h, alias it production, then, each under
``gunicorn -c gunicorn.conf.py --bind 127.0.0.1:PORT`` with 2 sync workers:

  cold   start-up: seconds from spawning Gunicorn to the first 200 on /api/health, and until
         both workers answered 200 (two pollers; the access log gives the answering pid);
  (d)    bench/bare_app.py: a bare Flask JSON endpoint, the floor;
  (a)    POST /api/v1/predict {BTC, 24h} with the response cache on (hits);
  (b)    the same with CACHE_ENABLED=0: every request runs the full ensemble;
  (c)    POST /api/v1/predict/batch, 10 symbols (7 distinct assets + 3 other spellings, which
         the service computes once), cache off;
then, with Gunicorn stopped, in-process PredictionService.predict / predict_batch latency.
PSS: sum of Pss in /proc/<worker>/smaps_rollup of the 2 workers of instance (b)/(c), read
after its load runs (every bundle, the LSTM included, loaded and warm).

Load: wrk (`apt-get install -y wrk`) with a Lua script for the POST body, 1 thread and
--connections connections (default 4 = 2 per worker, so latency includes a little queueing),
after a warm-up run. Requests go to 127.0.0.1 only. The app runs as in production (LOG_LEVEL
info, one JSON log line per request to a file, prediction log on), except that the rate limit
is raised so the benchmark is not throttled. On a 2-core machine wrk shares the cores with the
workers; ratios to (d) are the comparable figures.

    .venv/bin/python -m bench.bench_serving [--seconds 15] [--days 120] [--quick] [--workdir DIR]
    .venv/bin/python -m bench.bench_serving --rounds 5 --connections 32 --seconds 8 [--redis URL] [--nginx]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("CRYPTO_PREDICTOR_DATA_DIR", REPO.parent / "shared" / "data" / "ohlcv"))
ASSETS = ("bitcoin", "ethereum", "binancecoin", "cardano", "solana", "polkadot", "litecoin")
TIMEFRAME = "24h"
PREDICT = {"symbol": "BTC", "timeframe": TIMEFRAME}
BATCH_SIZE = 10
TARGETS = {"cached_ratio": 0.70, "uncached_ratio": 0.25, "inproc_p50_ms": 3.0, "batch_p50_ms": 20.0,
           "pss_gb": 0.8, "ready_s": 5.0}


# ---------------------------------------------------------------- data and bundle

def prepare(workdir: Path, data_dir: Path, assets, days: int, quick: bool, jobs: int,
            design: str = "auto") -> tuple[str, Path, str]:
    """(database url, models dir, production version); reuses a bundle already aliased there."""
    from crypto_predictor.registry.aliases import get_aliases, set_alias

    url, models = f"sqlite:///{workdir / 'store.db'}", workdir / "models"
    if models.is_dir() and get_aliases(models).get("production"):
        version = get_aliases(models)["production"]
        print(f"reusing bundle {version} in {models}")
        return url, models, version
    from crypto_predictor.training.pipeline import TrainOptions, train_run
    from tests.support.slices import fill_store

    fill_store(url, data_dir, assets, last_days=days + 60)
    started = time.perf_counter()
    options = TrainOptions(quick=quick, days=days, seed=42, design=design)  # every kind and the ensemble
    version, _ = train_run(url, list(assets), [TIMEFRAME], options, models, n_jobs=jobs)
    set_alias(models, "production", version)
    print(f"trained {version} ({', '.join(options.kinds)}; quick={quick}; {len(assets)} assets x {TIMEFRAME}; "
          f"{days} days) in {time.perf_counter() - started:.0f} s")
    return url, models, version


def batch_body(assets) -> dict:
    """BATCH_SIZE symbols: every asset's ticker first, then other spellings (computed once each)."""
    from crypto_predictor.symbols import resolve

    found = [resolve(a) for a in assets]
    names = [n for spell in ("ticker", "id", "pair", "name") for n in (getattr(a, spell) for a in found)]
    names += [n.lower() for n in names]
    return {"symbols": names[:BATCH_SIZE], "timeframe": TIMEFRAME}


# ---------------------------------------------------------------- gunicorn

class Gunicorn:
    """One Gunicorn instance on 127.0.0.1 with the repository's gunicorn.conf.py."""

    def __init__(self, app: str, env: dict, logdir: Path, name: str, access_log: bool = False,
                 bind: str | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.access = logdir / f"{name}.access.log" if access_log else None
        if self.access is not None:
            self.access.unlink(missing_ok=True)  # a kept --workdir holds the previous run's log
        env = {**os.environ, "PORT": str(self.port), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "1", **env}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("GUNICORN_ACCESSLOG", None)
        cmd = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py",
               "--bind", bind or f"127.0.0.1:{self.port}"]
        if self.access is not None:  # pid and status of every request: which worker answered
            cmd += ["--access-logfile", str(self.access), "--access-logformat", "%(p)s %(s)s %(U)s"]
        self.out = open(logdir / f"{name}.out", "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd + [app], cwd=REPO, env=env, stdout=self.out, stderr=subprocess.STDOUT)

    def wait_ok(self, path: str, timeout: float = 120) -> float:
        """Seconds from spawn to the first 200 on ``path``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.out.name}")
            try:
                if requests.get(self.base + path, timeout=timeout).status_code == 200:
                    return time.perf_counter() - self.started
            except requests.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"{path} never answered 200; see {self.out.name}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return sorted(int(p) for p in children)

    def pss_mb(self) -> dict:
        out = {}
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    out[pid] = int(line.split()[1]) / 1024
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.out.close()


def cold_start(env: dict, logdir: Path) -> dict:
    """First /api/health 200, and the time both workers have answered one (two pollers)."""
    g = Gunicorn("flask_api:app", env, logdir, "cold", access_log=True)
    try:
        stop, firsts = threading.Event(), []

        def poll():
            session = requests.Session()
            while not stop.is_set() and time.perf_counter() - g.started < 120:
                try:
                    if session.get(g.base + "/api/health", timeout=60).status_code == 200:
                        firsts.append(time.perf_counter() - g.started)
                except requests.ConnectionError:
                    time.sleep(0.02)

        pollers = [threading.Thread(target=poll, daemon=True) for _ in range(2)]
        for t in pollers:
            t.start()
        both = None
        while both is None and time.perf_counter() - g.started < 120 and g.proc.poll() is None:
            lines = g.access.read_text().split("\n")[:-1] if g.access.exists() else []
            if len({ln.split()[0] for ln in lines if ln.endswith(" 200 /api/health")}) >= 2:
                both = time.perf_counter() - g.started
            time.sleep(0.02)
        stop.set()
        for t in pollers:
            t.join(timeout=70)
        return {"first": min(firsts) if firsts else None, "both": both}
    finally:
        g.stop()


# ---------------------------------------------------------------- load

LUA = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body}]]\n'
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS[unit]


def wrk(url: str, body: dict, seconds: float, connections: int, scripts: Path, threads: int = 1) -> dict:
    script = scripts / f"body{abs(hash(json.dumps(body)))}.lua"
    script.write_text(LUA.format(body=json.dumps(body)))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "--latency",
           "-s", str(script), url]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", text, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)$", text, re.M)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "requests": int(re.search(r"(\d+) requests in", text).group(1)),
            "p50": _ms(pct["50"]), "p99": _ms(pct["99"]), "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else None}


def check(base: str, path: str, body: dict, cached: bool | None) -> str:
    """A few requests after the warm-up, outside the timed run: the scenario is what it claims."""
    for _ in range(4):  # sync workers take turns: this reaches both, most likely
        r = requests.post(base + path, json=body, timeout=60)
        r.raise_for_status()
        data = r.json()
        if path.endswith("/batch"):
            meta = data["metadata"]
            assert meta["succeeded"] == len(body["symbols"]) and meta["cache_hits"] == 0, meta
            note = f"{meta['count']} entries, version {meta['model_version']}"
        else:
            assert cached is None or data["metadata"]["cache_hit"] is cached, data["metadata"]
            note = f"version {data['data']['model_version']}, cache_hit={data['metadata']['cache_hit']}"
    return note


def cached_rounds(env: dict, logdir: Path, rounds: int, seconds: float, connections: int, nginx: bool) -> None:
    """Cached /predict against the bare endpoint, both up at once, in alternating wrk -t2 rounds:
    on a shared machine the ratio of neighbouring runs is the comparable figure. ``nginx``: each
    behind its own deploy/nginx.conf, Gunicorn on a unix socket, as deploy/start.sh runs them."""
    from tests.support.nginx import NginxProxy

    servers, proxies, bases = {}, [], {}
    try:
        apps = (("bare", "bench.bare_app:app", {}), ("cached", "flask_api:app", {"CACHE_ENABLED": "1"}))
        for name, app, extra in apps:
            sock = logdir / f"rounds-{name}.sock"
            servers[name] = Gunicorn(app, dict(env, **extra), logdir, f"rounds-{name}",
                                     bind=f"unix:{sock}" if nginx else None)
            bases[name] = servers[name].base
            if nginx:
                proxies.append(NginxProxy(logdir / f"nginx-{name}", f"unix:{sock}").start())
                bases[name] = proxies[-1].base
        for name, base in bases.items():
            wait_ok(base)
            wrk(base + "/api/v1/predict", PREDICT, 3, connections, logdir, threads=2)
        print(f"cached: {check(bases['cached'], '/api/v1/predict', PREDICT, True)}"
              + ("; both behind nginx" if nginx else "; clients connect to Gunicorn"))
        ratios = []
        for i in range(rounds):
            got = {name: wrk(base + "/api/v1/predict", PREDICT, seconds, connections, logdir, threads=2)
                   for name, base in bases.items()}
            ratios.append(got["cached"]["rps"] / got["bare"]["rps"])
            print(f"  round {i + 1}: bare {got['bare']['rps']:7.0f} req/s (p99 {got['bare']['p99']:.1f} ms), "
                  f"cached {got['cached']['rps']:7.0f} req/s (p99 {got['cached']['p99']:.1f} ms): "
                  f"x bare {ratios[-1]:.3f}")
        print(f"cached / bare, wrk -t2 -c{connections}, {rounds} rounds of {seconds:g} s: "
              f"median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    finally:
        for proxy in proxies:
            proxy.stop()
        for g in servers.values():
            g.stop()


def wait_ok(base: str, timeout: float = 120) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if requests.get(base + "/api/health", timeout=10).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base}/api/health never answered 200")


# ---------------------------------------------------------------- in-process

def in_process(url: str, models: Path, calls: int, batch: dict) -> dict:
    from crypto_predictor.config import Config
    from crypto_predictor.serving.service import PredictionService

    service = PredictionService(Config({"DATABASE_URL": url, "MODELS_DIR": str(models),
                                        "MARKET_DATA_SOURCE": "csv"}))
    started = time.perf_counter()
    service.start()  # verify hashes, load every pair (TensorFlow import included), warm up
    load_s = time.perf_counter() - started
    version = service.models.served.aliases["production"]
    kind = service.models.served.bundles[version].pair("bitcoin", TIMEFRAME).kind

    def timed(fn, n):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        return statistics.median(times), times[int(0.99 * (len(times) - 1))]

    cold = timed(lambda: service.predict("BTC", TIMEFRAME), 1)[0]  # features and interval stats computed
    one = timed(lambda: service.predict("BTC", TIMEFRAME), calls)
    assert all(e["status"] == "success" for e in service.predict_batch(batch["symbols"], TIMEFRAME))
    many = timed(lambda: service.predict_batch(batch["symbols"], TIMEFRAME), max(20, calls // 5))
    if service.log is not None:
        service.log.flush(timeout=5.0)
    return {"load_s": load_s, "kind": kind, "cold_ms": cold, "predict": one, "batch": many}


# ---------------------------------------------------------------- main

def _line(name: str, r: dict, bare: dict | None) -> str:
    ratio = f"{r['rps'] / bare['rps']:.2f}" if bare else "1.00"
    extra = "" if not (r["non2xx"] or (r["socket_errors"] or "")) else \
        f"  non-2xx {r['non2xx']}, socket errors: {r['socket_errors']}"
    return (f"  {name:<34} {r['rps']:8.1f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
            f"x bare {ratio}  ({r['requests']} requests){extra}")


def _verdict(ok: bool) -> str:
    return "MET " if ok else "MISS"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--assets", default=",".join(ASSETS), help="comma-separated asset ids to train")
    parser.add_argument("--days", type=int, default=120, help="train on the newest N days")
    parser.add_argument("--quick", action="store_true", help="tiny model settings (faster training)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel trainings")
    parser.add_argument("--design", choices=("auto", "pair", "global"), default="auto",
                        help="training design (auto: train_model.py's default)")
    parser.add_argument("--seconds", type=float, default=15, help="timed wrk run per scenario")
    parser.add_argument("--warmup", type=float, default=5,
                        help="untimed wrk run before each scenario, repeated (5 at most) until its p99 < 1 s")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--calls", type=int, default=300, help="timed in-process predictions")
    parser.add_argument("--rounds", type=int, default=0,
                        help="only compare cached /predict with the bare endpoint in N alternating wrk -t2 rounds")
    parser.add_argument("--redis", help="with --rounds: cache in this Redis (CACHE_REDIS_URL), as in production")
    parser.add_argument("--nginx", action="store_true", help="with --rounds: behind deploy/nginx.conf, as deployed")
    parser.add_argument("--workdir", type=Path, help="keep store and bundle here (reused when present)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for every Gunicorn instance (e.g. OMP_NUM_THREADS=1); repeatable")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_serving_"))
    workdir.mkdir(parents=True, exist_ok=True)
    logdir = workdir / "logs"
    logdir.mkdir(exist_ok=True)
    try:
        url, models, version = prepare(workdir, args.data_dir, args.assets.split(","), args.days, args.quick,
                                       args.jobs, args.design)
        env = {"DATABASE_URL": url, "MODELS_DIR": str(models), "MARKET_DATA_SOURCE": "csv",
               "RATELIMIT_DEFAULT": "100000000 per minute", "LOG_LEVEL": "info"}
        env.update(item.split("=", 1) for item in args.env)
        if args.rounds:
            if args.redis:
                env["CACHE_REDIS_URL"] = args.redis
            return cached_rounds(env, logdir, args.rounds, args.seconds, args.connections, args.nginx)
        batch = batch_body(args.assets.split(","))
        ready = cold_start(dict(env, CACHE_ENABLED="1"), logdir)
        results, pss = {}, {}

        def scenario(app, extra, name, runs):
            g = Gunicorn(app, dict(env, **extra), logdir, name)
            try:
                g.wait_ok("/api/health")
                for label, path, body, cached in runs:
                    for _ in range(5):  # untimed until both workers have loaded and warmed up
                        if wrk(g.base + path, body, args.warmup, args.connections, logdir)["p99"] < 1000:
                            break
                    note = check(g.base, path, body, cached) if app != "bench.bare_app:app" else "bare"
                    results[label] = wrk(g.base + path, body, args.seconds, args.connections, logdir)
                    results[label]["note"] = note
                pss[name] = g.pss_mb()
            finally:
                g.stop()

        scenario("bench.bare_app:app", {}, "bare", [("d", "/api/v1/predict", PREDICT, None)])
        scenario("flask_api:app", {"CACHE_ENABLED": "1"}, "cached", [("a", "/api/v1/predict", PREDICT, True)])
        scenario("flask_api:app", {"CACHE_ENABLED": "0"}, "uncached",
                 [("b", "/api/v1/predict", PREDICT, False), ("c", "/api/v1/predict/batch", batch, None)])
        inproc = in_process(url, models, args.calls, batch)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    bare = results["d"]
    print(f"\nbundle {version}: served kind for bitcoin/{TIMEFRAME} = {inproc['kind']}; "
          f"Gunicorn 2 sync workers on 127.0.0.1; wrk -t1 -c{args.connections} {args.seconds:g} s per scenario")
    print(_line("(d) bare Flask JSON endpoint", bare, None))
    print(_line("(a) /predict, cached", results["a"], bare) + f"  [{results['a']['note']}]")
    print(_line("(b) /predict, uncached (ensemble)", results["b"], bare) + f"  [{results['b']['note']}]")
    print(_line("(c) /predict/batch x10, uncached", results["c"], bare) + f"  [{results['c']['note']}]")
    print(f"      batch symbols: {', '.join(batch['symbols'])}")
    p50, p99 = inproc["predict"]
    b50, b99 = inproc["batch"]
    print(f"  in-process service.predict: p50 {p50:.2f} ms, p99 {p99:.2f} ms (first call {inproc['cold_ms']:.1f} ms;"
          f" bundle load {inproc['load_s']:.1f} s)")
    print(f"  in-process service.predict_batch x10: p50 {b50:.2f} ms, p99 {b99:.2f} ms")
    for name, per in pss.items():
        print(f"  PSS {name:<8}: " + ", ".join(f"worker {pid} {mb:.0f} MB" for pid, mb in per.items())
              + f"; total {sum(per.values()):.0f} MB")
    fmt = lambda v: "n/a" if v is None else f"{v:.2f} s"  # noqa: E731
    print(f"  worker ready (spawn -> first /api/health 200): {fmt(ready['first'])}; both workers: {fmt(ready['both'])}")

    pss_gb = sum(pss["uncached"].values()) / 1024
    print("\ntargets:")
    checks = [
        (results["a"]["rps"] / bare["rps"] >= TARGETS["cached_ratio"],
         f"cached >= {TARGETS['cached_ratio']} x bare: {results['a']['rps'] / bare['rps']:.2f}"),
        (p50 <= TARGETS["inproc_p50_ms"], f"uncached in-process p50 <= {TARGETS['inproc_p50_ms']} ms: {p50:.2f} ms"),
        (results["b"]["rps"] / bare["rps"] >= TARGETS["uncached_ratio"],
         f"uncached >= {TARGETS['uncached_ratio']} x bare under Gunicorn: {results['b']['rps'] / bare['rps']:.2f}"),
        (results["c"]["p50"] <= TARGETS["batch_p50_ms"],
         f"batch of 10 p50 <= {TARGETS['batch_p50_ms']} ms (Gunicorn, wrk): {results['c']['p50']:.2f} ms"
         f" (in-process {b50:.2f} ms)"),
        (pss_gb <= TARGETS["pss_gb"], f"PSS of 2 workers <= {TARGETS['pss_gb']} GB: {pss_gb:.2f} GB"),
        (ready["first"] is not None and ready["first"] <= TARGETS["ready_s"],
         f"worker ready <= {TARGETS['ready_s']} s: {fmt(ready['first'])}"),
    ]
    for ok, text in checks:
        print(f"  {_verdict(ok)} {text}")


if __name__ == "__main__":
    main()
