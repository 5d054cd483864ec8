"""What listing the model store costs as versions pile up: /api/v1/models and the dashboard overview.

N copies of one manifest (``--manifest``: a real bundle's manifest.json) in a temporary local store;
printed: milliseconds per listing with every version's overall metrics (what /api/v1/models answered
before 2026-12-04; ``deploy_model.py --list`` still reads them), and with each pair's headline alone
(what /api/v1/models and the dashboard overview list now), the first call and the calls after it,
which reuse each version's row while its manifest file is unchanged; and the JSON size of each listing.

    .venv/bin/python -m bench.bench_versions --manifest improved_models/v1/manifest.json [--versions 10 --versions 50]
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click

from crypto_predictor.registry.store import LocalStore


def _ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


@click.command()
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--versions", "counts", type=click.IntRange(min=1), multiple=True, default=(10, 50))
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True)
def main(manifest, counts, repeat):
    text = Path(manifest).read_bytes()
    print(f"manifest {len(text) / 1e6:.2f} MB")
    print(f"{'versions':>8}  {'metrics ms':>10}  {'first ms':>8}  {'after ms':>8}  ratio  {'metrics MB':>10}  "
          f"{'headline MB':>11}")
    for count in counts:
        root = Path(tempfile.mkdtemp(prefix="cp-versions-"))
        try:
            for i in range(1, count + 1):
                (root / f"v{i}").mkdir()
                (root / f"v{i}" / "manifest.json").write_bytes(text)
            store = LocalStore(root)
            full = _ms(lambda: store.list_versions(), repeat)
            first = _ms(lambda: store.list_versions(metrics=False), 1)
            after = _ms(lambda: store.list_versions(metrics=False), repeat)
            sizes = [len(json.dumps(store.list_versions(metrics=m))) / 1e6 for m in (True, False)]
            print(f"{count:>8}  {full:>10.1f}  {first:>8.1f}  {after:>8.2f}  {full / after:>4.0f}x  {sizes[0]:>10.2f}  "
                  f"{sizes[1]:>11.3f}")
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
