"""`evaluate_model.py`: re-test an existing bundle on a date range, without retraining.

    python evaluate_model.py --version v3 --start 2021-09-11 --json out.json --plots plots/
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from crypto_predictor.cli.common import ingest_csv, load_config, open_store
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.registry.bundle import open_bundle_dir
from crypto_predictor.registry.catalog import open_bundle
from crypto_predictor.registry.store import open_model_store
from crypto_predictor.registry.versions import version_number
from crypto_predictor.sentiment_features import uses_sentiment
from crypto_predictor.symbols import TIMEFRAMES
from crypto_predictor.timeutil import parse_time
from crypto_predictor.training.retest import evaluate_bundle, report, select_pairs


def _check_time(ctx, param, value):
    try:
        parse_time(value, f"--{param.name}")
    except CryptoPredictorError as exc:
        raise click.BadParameter(exc.message) from None
    return value


def _fmt(value, pattern: str, width: int) -> str:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    return (pattern.format(value) if ok else "-").rjust(width)


def format_table(rows: list[dict]) -> list[str]:
    lines = [f"{'symbol':<12} {'tf':<4} {'model':<14} {'n':>6} {'MAE':>9} {'MASE':>7} {'dir.acc':>7} "
             f"{'top10%':>7} {'cov80':>6} {'cov95':>6} {'width80':>8}"]
    for r in rows:
        lines.append(f"{r['symbol']:<12} {r['timeframe']:<4} {r['model']:<14} {r['n']:>6} "
                     f"{_fmt(r['mae'], '{:.6f}', 9)} {_fmt(r['mase'], '{:.4f}', 7)} "
                     f"{_fmt(r['directional_accuracy'], '{:.3f}', 7)} "
                     f"{_fmt(r['top_decile_directional_accuracy'], '{:.3f}', 7)} "
                     f"{_fmt(r['coverage_80'], '{:.3f}', 6)} {_fmt(r['coverage_95'], '{:.3f}', 6)} "
                     f"{_fmt(r['interval_width_80'], '{:.5f}', 8)}")
    return lines


def _open(models_dir, version, model_path):
    if model_path is None:
        models = open_model_store(models_dir)
        return open_bundle(models.root, models.fetch(version).name)  # a shared store's version is pulled first
    bundle = open_bundle_dir(model_path)
    if version_number(version) is not None and version != bundle.version:
        raise click.ClickException(f"--model_path holds bundle {bundle.version}, not --version {version}")
    return bundle


@click.command(name="evaluate")
@click.option("--version", default=None,
              help="Bundle version (v3) or alias (production, challenger) in --models-dir.")
@click.option("--model_path", "--model-path", "model_path", type=click.Path(file_okay=False), default=None,
              help="A bundle directory to evaluate directly (still sha256-verified); replaces --version.")
@click.option("--models-dir", default=None, help="Model store (default: MODELS_DIR, else improved_models/).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Ingest <PAIR>-1h.csv[.gz] files from this directory into the store first.")
@click.option("--symbol", "symbols", multiple=True,
              help="Asset (bitcoin, BTC, BTCUSDT); repeatable; default: every asset in the bundle.")
@click.option("--timeframe", "timeframes", multiple=True,
              help=f"Timeframe ({', '.join(TIMEFRAMES)}); repeatable; default: every one in the bundle.")
@click.option("--start", default=None, callback=_check_time,
              help="Score only predictions made at or after this ISO time (UTC if no zone); earlier rows are "
                   "feature history. Pick a time after the bundle's training data for an honest test.")
@click.option("--end", default=None, callback=_check_time,
              help="Ignore candles after this ISO time (rows whose target is not realised by then are dropped).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the results as JSON to this file.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNG plots per (symbol, timeframe) into this directory.")
@click.option("--database-url", default=None, help="Candle store URL (default: DATABASE_URL).")
def evaluate_command(version, model_path, models_dir, data_dir, symbols, timeframes, start, end, json_out,
                     plots_dir, database_url):
    """Score a saved bundle against the naive forecast on stored candles, without retraining.

    Prints one row per model kind plus `naive` for each (symbol, timeframe); intervals and
    confidence are computed causally inside the scored window from the bundle's stored
    out-of-sample residuals and calibrator.
    """
    if version is None and model_path is None:
        raise click.UsageError("pass --version (or an alias) or --model_path")
    config = load_config()
    try:
        bundle = _open(models_dir or config.MODELS_DIR, version, model_path)
        pairs = select_pairs(bundle, symbols, timeframes)
        _, store = open_store(database_url)
        if data_dir:
            ingest_csv(store, data_dir, list(dict.fromkeys(a for a, _ in pairs)),
                       sentiment=uses_sentiment(bundle.manifest.get("features", ())))
        evaluations = evaluate_bundle(bundle, store, pairs, start, end)
        doc = report(bundle, evaluations, start, end)
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc

    click.echo(f"bundle {bundle.version}: " + "; ".join(
        f"{p['symbol']} {p['timeframe']} scored {p['scored_start']} .. {p['scored_end']} ({p['n']} rows)"
        for p in doc["pairs"]))
    for line in doc["warnings"]:
        click.echo(line, err=True)
    for line in format_table(doc["results"]):
        click.echo(line)
    if json_out:
        path = Path(json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
        click.echo(f"wrote {path}")
    if plots_dir:
        from crypto_predictor.training.plots import write_plots  # matplotlib: only when plots are asked for

        written = []
        for evaluation in evaluations:
            written += write_plots(evaluation, bundle.manifest, plots_dir)
        click.echo(f"wrote {len(written)} plot(s) to {plots_dir}")
