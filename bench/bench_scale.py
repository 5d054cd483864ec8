"""Scale: global training for more assets, locally and on a 2-worker Dask LocalCluster, with the
per-task times and scheduler overhead from which the time on 8 and 32 workers is projected.

    .venv/bin/python -m bench.bench_scale train --assets 10,50 [--days 180] [--model linear,xgboost] [--workdir DIR]
    .venv/bin/python -m bench.bench_scale serve DIR/store-20.db:DIR/models-20-local DIR/store-174.db:DIR/models-174-local

``serve`` loads each bundle in a fresh process (production alias = its newest version) and reports bundle
size, load time (hashes verified, every pair loaded and warmed), the process's PSS after loading and
predicting, in-process ``predict`` p50 with the response cache out of the way (the worker's feature
memo is warm, as in production after a candle's first request) and a batch of 50 distinct assets:
as trained, and with every pair given a model share (the gate shrinks most to no-change, and then
no model is called), once with one call per global model for the batch and once pair by pair.

Assets are the first N of the supported list (the 20 core assets, then the universe). Each size is
trained twice with the same seed: the local fan-out (fits in this process, 2 threads each) and a
LocalCluster of 2 single-threaded worker processes. Per timeframe the manifest records every fit's
seconds and the wall time of each phase (datasets, fits, per-asset scoring, each a set of tasks);
what is left of the wall time (writing the bundle) runs on the client. Projection for W workers:
    client time + sum over timeframes and phases of max(task seconds / W, longest task)
    + overhead per task x tasks
with the overhead per task measured on the 2-worker run. The cluster runs on this same 2-core
machine, so its 2 workers are the 2 cores the local run also uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

TIMEFRAMES = ("1h", "24h")


def _ingest(url: str, data_dir: Path, assets: list[str], days: int) -> None:
    args = [sys.executable, "-m", "crypto_predictor", "ingest", "--source", "csv", "--data-dir", str(data_dir),
            "--days", str(days + 60), "--database-url", url]
    for asset in assets:
        args += ["--symbol", asset]
    subprocess.run(args, check=True, capture_output=True)


def _train(url: str, assets, options, models: Path, fanout) -> tuple[float, dict]:
    from crypto_predictor.training.pipeline import train_run

    started = time.perf_counter()
    version, _ = train_run(url, assets, list(TIMEFRAMES), options, models, fanout=fanout)
    wall = time.perf_counter() - started
    manifest = json.loads((models / version / "manifest.json").read_text())
    return wall, manifest


def _phases(manifest: dict) -> dict:
    """Per timeframe: the wall time of each phase, and its tasks' seconds (sum, longest, count)."""
    out = {}
    for tf in TIMEFRAMES:
        info = manifest["extra"]["design"][tf]
        fits = [s for kind in info["fit_seconds"].values() for s in kind["folds"]]
        fits += [kind["total"] - sum(kind["folds"]) for kind in info["fit_seconds"].values()]
        scores = [sum(by_tf[tf].values()) for by_tf in manifest["metrics"]["train_seconds"].values() if tf in by_tf]
        out[tf] = {"build": info["dataset_seconds"], "builds": info["dataset_task_seconds"],
                   "fit": info["fit_phase_seconds"], "fits": fits,
                   "score": info["score_phase_seconds"], "scores": scores}
    return out


def _projected(client_s: float, phases: dict, workers: int, per_task: float) -> float:
    total = client_s
    for p in phases.values():
        for tasks in (p["builds"], p["fits"], p["scores"]):
            total += max(sum(tasks) / workers, max(tasks)) + per_task * len(tasks)
    return total


@click.group()
def cli():
    pass


@cli.command()
@click.option("--assets", default="10,50", show_default=True, help="Comma-separated asset counts")
@click.option("--days", default=180, show_default=True)
@click.option("--model", default="linear,xgboost", show_default=True, help="Kinds (comma-separated)")
@click.option("--data-dir", default="../shared/data", show_default=True)
@click.option("--workdir", default=None, help="Keep the stores and bundles here")
def train(assets, days, model, data_dir, workdir):
    from distributed import Client, LocalCluster

    from crypto_predictor.symbols import supported_ids
    from crypto_predictor.training.fanout import DaskFanout, LocalFanout
    from crypto_predictor.training.pipeline import TrainOptions

    root = Path(workdir or tempfile.mkdtemp(prefix="scale-"))
    root.mkdir(parents=True, exist_ok=True)
    kinds = tuple(k.strip() for k in model.split(","))
    options = TrainOptions(kinds=kinds, members=tuple(k for k in kinds if k != "ensemble"), seed=1, days=days,
                           design="global")
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        for n in [int(a) for a in assets.split(",")]:
            names = supported_ids()[:n]
            url = f"sqlite:///{root / f'store-{n}.db'}"
            if not (root / f"store-{n}.db").exists():
                started = time.perf_counter()
                _ingest(url, Path(data_dir), names, days)
                click.echo(f"{n} assets ingested in {time.perf_counter() - started:.0f} s", err=True)
            for mode, fanout in (("local", LocalFanout(2)), ("dask-2", DaskFanout(cluster.scheduler_address, client))):
                wall, design = _train(url, names, options, root / f"models-{n}-{mode}", fanout)
                rows.append((n, mode, wall, _phases(design)))
                click.echo(f"{n} assets {mode}: {wall:.1f} s", err=True)
    click.echo(f"\n{', '.join(kinds)}; {days} days; {' + '.join(TIMEFRAMES)}; global design\n")
    click.echo(f"{'assets':>6} {'run':<14} {'wall s':>7} {'datasets':>9} {'fits':>6} {'scoring':>8} {'other':>6} "
               f"{'dataset tasks':>13} {'fit tasks':>10} {'score tasks':>12} {'ovh/task':>9}")
    for n, mode, wall, phases in rows:
        build = sum(p["build"] for p in phases.values())
        fit = sum(p["fit"] for p in phases.values())
        score = sum(p["score"] for p in phases.values())
        fits = [t for p in phases.values() for t in p["fits"]]
        scores = [t for p in phases.values() for t in p["scores"]]
        builds = [t for p in phases.values() for t in p["builds"]]
        client_s = wall - build - fit - score  # writing and the rest run on the client
        overhead = ""
        if mode == "dask-2":
            ideal = sum(max(sum(p[k]) / 2, max(p[k])) for p in phases.values() for k in ("builds", "fits", "scores"))
            per_task = max(0.0, build + fit + score - ideal) / (len(builds) + len(fits) + len(scores))
            overhead = f"{1000 * per_task:.0f} ms"
        click.echo(f"{n:>6} {mode:<14} {wall:>7.1f} {build:>9.1f} {fit:>6.1f} {score:>8.1f} {client_s:>6.1f} "
                   f"{f'{len(builds)} x {sum(builds) / len(builds):.2f}s':>13} "
                   f"{f'{len(fits)} x {sum(fits) / len(fits):.2f}s':>10} "
                   f"{f'{len(scores)} x {sum(scores) / len(scores):.2f}s':>12} {overhead:>9}")
        if mode == "dask-2":
            for workers in (2, 8, 32):
                click.echo(f"{n:>6} {f'projected {workers}':<14} {_projected(client_s, phases, workers, per_task):>7.1f}")


def _pss_mb() -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _p50_ms(fn, n: int) -> float:
    import statistics

    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


@cli.command("serve-one", hidden=True)
@click.argument("url")
@click.argument("models")
def serve_one(url, models):
    """One bundle in this process: prints one JSON line."""
    from crypto_predictor.config import Config
    from crypto_predictor.registry.aliases import set_alias
    from crypto_predictor.registry.versions import available_versions
    from crypto_predictor.serving.service import PredictionService

    version = available_versions(Path(models))[-1]
    set_alias(Path(models), "production", version)
    service = PredictionService(Config({"DATABASE_URL": url, "MODELS_DIR": models, "MARKET_DATA_SOURCE": "csv",
                                        "PREDICTION_LOG": "0"}))
    started = time.perf_counter()
    service.start()
    load_s = time.perf_counter() - started
    bundle = service.models.served.bundles[version]
    assets = sorted({a for a, tf in bundle.pairs if tf == "24h"})
    batch = (assets * 50)[:50]
    for asset in assets:  # every asset's feature rows once: the memo a worker has after each asset's first request
        service.predict(asset, "24h")
    one = _p50_ms(lambda: service.predict("bitcoin", "24h"), 300)
    many = _p50_ms(lambda: service.predict_batch(batch, "24h"), 50)
    pss = _pss_mb()
    # Where the skill gate shrank forecasts to no-change no model is called; give every pair a share to
    # time the models' batch call, shared per global model and, for comparison, pair by pair.
    for pair in bundle.pairs.values():
        pair.shrink = pair.shrink or 0.5
    shared = _p50_ms(lambda: service.predict_batch(batch, "24h"), 50)
    service._model_outputs = lambda pairs, prepared: {}
    by_pair = _p50_ms(lambda: service.predict_batch(batch, "24h"), 50)
    size = sum(p.stat().st_size for p in (Path(models) / version).rglob("*") if p.is_file())
    print(json.dumps({"assets": len(assets), "pairs": len(bundle.pairs), "bundle_mb": size / 2**20, "load_s": load_s,
                      "pss_mb": pss, "predict_p50_ms": one, "batch50_p50_ms": many, "models_shared_ms": shared,
                      "models_by_pair_ms": by_pair}))


@cli.command()
@click.argument("bundles", nargs=-1, required=True)
def serve(bundles):
    """BUNDLES: STORE.db:MODELS_DIR pairs; each is measured in a fresh process."""
    click.echo(f"{'assets':>6} {'pairs':>6} {'bundle MB':>10} {'load s':>7} {'PSS MB':>7} {'predict p50 ms':>15} "
               f"{'batch50 p50 ms':>15} {'models: shared':>15} {'by pair':>8}")
    for spec in bundles:
        db, models = spec.split(":", 1)
        out = subprocess.run([sys.executable, "-m", "bench.bench_scale", "serve-one", f"sqlite:///{db}", models],
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        click.echo(f"{r['assets']:>6} {r['pairs']:>6} {r['bundle_mb']:>10.1f} {r['load_s']:>7.2f} {r['pss_mb']:>7.0f} "
                   f"{r['predict_p50_ms']:>15.3f} {r['batch50_p50_ms']:>15.3f} {r['models_shared_ms']:>15.3f} "
                   f"{r['models_by_pair_ms']:>8.3f}")


if __name__ == "__main__":
    cli()
