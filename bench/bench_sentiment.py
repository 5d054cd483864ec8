"""Does the Fear & Greed Index help? The global models walk-forward with and without its features.

For each timeframe the global design (``training.global_models.train_global``, what
``train_model.py --design global`` runs) is trained twice on the same assets and the same
calendar folds (checked), once with ``TrainOptions(sentiment=True)``. Prints per forecast
(served, the ensemble, each kind) the means over assets of MASE, direction accuracy, the 80%
interval score relative to ``baseline_quantile`` and the Brier score of the direction
probability, and how many assets each version wins on MASE. Uses the store in DATABASE_URL
(ingest the shared CSVs and ``ingest --source fear-greed --data-dir ../shared/data`` first).

    .venv/bin/python -m bench.bench_sentiment [--timeframe 1h --timeframe 24h --timeframe 7d] [--json out.json]
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import click

from crypto_predictor.cli.common import resolve_symbols, stored_assets
from crypto_predictor.config import Config
from crypto_predictor.market.store import CandleStore
from crypto_predictor.training.global_models import train_global
from crypto_predictor.training.pipeline import TrainOptions

FIELDS = ("mase", "directional_accuracy", "interval_score_80", "brier")


def _mean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _table(results) -> dict:
    """forecast -> asset -> {field: value}; the interval score relative to baseline_quantile's."""
    out = {}
    for r in results:
        bq = r.summary["baseline_quantile"]["interval_score_80"]
        for name, row in r.summary.items():
            if name.startswith("baseline") or name == "naive":
                continue
            values = {f: row.get(f) for f in FIELDS}
            values["interval_score_80"] = (row["interval_score_80"] / bq
                                           if row.get("interval_score_80") is not None and bq else None)
            out.setdefault(name, {})[r.asset] = values
    return out


def _run(store, assets, tf: str, options: TrainOptions) -> tuple[dict, dict]:
    started = time.perf_counter()
    results, skipped, info = train_global(store, assets, tf, options)
    click.echo(f"{tf} sentiment={'on' if options.sentiment else 'off'}: {len(results)} assets, {info['rows']} rows, "
               f"{len(results[0].features)} features, {time.perf_counter() - started:.0f} s", err=True)
    return _table(results), info


@click.command()
@click.option("--symbol", "symbols", multiple=True, default=("all",), help="Assets ('all' = core assets stored).")
@click.option("--timeframe", "timeframes", multiple=True, default=("1h", "24h", "7d"), show_default=True)
@click.option("--quick", is_flag=True, help="Tiny models and 2 folds (a smoke run, not a measurement).")
@click.option("--json", "json_out", default=None, help="Also write every figure to this file.")
def main(symbols, timeframes, quick, json_out):
    store = CandleStore(Config().DATABASE_URL)
    assets = resolve_symbols(symbols, stored_assets(store))
    doc = {}
    for tf in timeframes:
        base = TrainOptions(design="global", quick=quick)
        off, info_off = _run(store, assets, tf, base)
        on, info_on = _run(store, assets, tf, dataclasses.replace(base, sentiment=True))
        if info_off["fold_edges"] != info_on["fold_edges"]:
            raise click.ClickException(f"{tf}: the two runs used different folds")
        click.echo(f"{tf}: {len(info_off['fold_edges']) - 1} calendar folds from {info_off['fold_edges'][0][:10]}")
        click.echo(f"  {'forecast':<15}{'MASE off':>10}{'on':>9}{'dir off':>9}{'on':>8}{'IS80/bq off':>13}{'on':>8}"
                   f"{'brier off':>11}{'on':>9}{'MASE wins on/off':>18}")
        for name in off:
            a, b = off[name], on.get(name, {})
            common = sorted(set(a) & set(b))
            wins = sum(b[x]["mase"] < a[x]["mase"] for x in common)
            m = {(f, side): _mean(v[x][f] for x in common) for f in FIELDS for side, v in (("off", a), ("on", b))}
            click.echo(f"  {name:<15}{m['mase', 'off']:>10.4f}{m['mase', 'on']:>9.4f}"
                       f"{m['directional_accuracy', 'off']:>9.4f}{m['directional_accuracy', 'on']:>8.4f}"
                       f"{m['interval_score_80', 'off']:>13.4f}{m['interval_score_80', 'on']:>8.4f}"
                       f"{m['brier', 'off']:>11.4f}{m['brier', 'on']:>9.4f}{wins:>12}/{len(common) - wins}")
        doc[tf] = {"off": off, "on": on, "fold_edges": info_off["fold_edges"]}
    if json_out:
        with open(json_out, "w") as fh:
            json.dump(doc, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
