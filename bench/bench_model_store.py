"""The model store's backends side by side: push, pull (with verification), alias switch and the
poll every worker makes, for one real bundle.

Backends: the local directory, the shared store on SQLite, and on a throwaway PostgreSQL on
127.0.0.1 (tests/support/servers.py; skipped without PostgreSQL installed). "pull" is a fresh
host's first ``fetch`` (blobs read, hashed, written, the copy verified); "poll" is one
``alias_token`` call, what each worker does every MODEL_POLL_SECONDS.

    .venv/bin/python -m bench.bench_model_store --bundle improved_models/v3 [--polls 2000]
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click

from crypto_predictor.registry.bundle import verify_bundle
from crypto_predictor.registry.sql_store import SqlStore
from crypto_predictor.registry.store import LocalStore


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _measure(name, make_store, bundle: Path, work: Path, polls: int) -> dict:
    source = work / f"{name}-trainer"
    source.mkdir()
    shutil.copytree(bundle, source / bundle.name)
    trainer = make_store(source)
    push = _timed(lambda: trainer.publish(bundle.name))
    host = make_store(work / f"{name}-host")
    if isinstance(host, LocalStore):  # one directory is the store: a fresh host copies it whole
        pull = _timed(lambda: (shutil.copytree(source / bundle.name, host.root / bundle.name),
                               verify_bundle(host.root / bundle.name)))
    else:
        pull = _timed(lambda: host.fetch(bundle.name))
    switch = _timed(lambda: trainer.set_alias("production", bundle.name))
    times = []
    for _ in range(polls):
        started = time.perf_counter()
        trainer.alias_token()
        times.append(time.perf_counter() - started)
    times.sort()
    return {"push_s": push, "pull_s": pull, "switch_s": switch, "poll_p50_ms": 1000 * statistics.median(times),
            "poll_p99_ms": 1000 * times[int(0.99 * (len(times) - 1))]}


@click.command()
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="A finished bundle directory (vN with its manifest.json).")
@click.option("--polls", default=2000, show_default=True)
def main(bundle, polls):
    verify_bundle(bundle)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    click.echo(f"bundle {bundle.name}: {sum(1 for f in bundle.rglob('*') if f.is_file())} files, {size / 1e6:.1f} MB")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows["local"] = _measure("local", LocalStore, bundle, work, polls)
        rows["sqlite"] = _measure("sqlite", lambda root: SqlStore(f"sqlite:///{work / 'models.db'}", root), bundle,
                                  work, polls)
        try:
            from tests.support.servers import PostgresServer

            server = PostgresServer().start()
        except Exception as exc:  # no PostgreSQL here: the other rows still stand
            click.echo(f"postgresql: skipped ({exc})")
        else:
            try:
                url = server.create_database("bench")
                rows["postgresql"] = _measure("postgresql", lambda root: SqlStore(url, root), bundle, work, polls)
            finally:
                server.stop()
    click.echo(f"{'backend':<11} {'push s':>7} {'pull s':>7} {'switch s':>9} {'poll p50 ms':>12} {'poll p99 ms':>12}")
    for name, r in rows.items():
        click.echo(f"{name:<11} {r['push_s']:>7.2f} {r['pull_s']:>7.2f} {r['switch_s']:>9.3f} "
                   f"{r['poll_p50_ms']:>12.3f} {r['poll_p99_ms']:>12.3f}")


if __name__ == "__main__":
    main()
