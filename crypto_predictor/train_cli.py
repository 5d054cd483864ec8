"""`train_model.py`: walk-forward evaluate, fit and version models into a new bundle."""

from __future__ import annotations

import sys
import time

import click

from crypto_predictor.config import Config
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.symbols import TIMEFRAMES, check_timeframe

MODEL_CHOICES = ["linear", "random_forest", "xgboost", "lstm", "ensemble", "all"]


def _timeframes(values) -> list[str]:
    if not values or "all" in values:
        return list(TIMEFRAMES)
    try:
        return list(dict.fromkeys(check_timeframe(v) for v in values))
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc


def format_summary(results) -> list[str]:
    lines = [f"{'asset':<12} {'tf':<4} {'model':<14} {'n':>6} {'MASE':>7} {'dir.acc':>7} {'top10%':>7} "
             f"{'cov80':>6} {'cov95':>6} {'secs':>7}"]
    for r in results:
        for kind, row in r.summary.items():
            secs = r.seconds.get(kind)
            lines.append(
                f"{r.asset:<12} {r.timeframe:<4} {kind:<14} {row['n']:>6} {row['mase']:>7.4f} "
                f"{row['directional_accuracy']:>7.3f} {row['top_decile_directional_accuracy']:>7.3f} "
                f"{row.get('coverage_80', float('nan')):>6.3f} {row.get('coverage_95', float('nan')):>6.3f} "
                f"{'' if secs is None else f'{secs:7.1f}'}")
    return lines


@click.command(name="train")
@click.option("--symbol", "symbols", multiple=True, default=("all",), show_default=True,
              help="Asset (bitcoin, BTC, BTCUSDT); repeatable; 'all' = every asset with stored (or --data-dir) data.")
@click.option("--timeframe", "timeframes", multiple=True, default=("all",), show_default=True,
              help=f"Prediction timeframe ({', '.join(TIMEFRAMES)}); repeatable; 'all' = every one.")
@click.option("--model", type=click.Choice(MODEL_CHOICES), default="all", show_default=True,
              help="Model kind to train; 'all' trains every kind and their ensemble.")
@click.option("--days", type=click.IntRange(min=2), default=None,
              help="Train and evaluate on the newest N days of data only (default: all stored history).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Ingest <PAIR>-1h.csv[.gz] files from this directory into the store first.")
@click.option("--models-dir", default=None, help="Model store (default: MODELS_DIR, else improved_models/).")
@click.option("--database-url", default=None, help="Candle store URL (default: DATABASE_URL).")
@click.option("--quick", is_flag=True, help="Tiny epochs, trees and 2 folds: for tests and smoke runs.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed for every model.")
@click.option("--folds", type=click.IntRange(min=2, max=20), default=4, show_default=True,
              help="Walk-forward folds (ignored with --quick, which uses 2).")
@click.option("--end", default=None, help="Ignore candles after this ISO time (reproducible retraining).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="(asset, timeframe) trainings run in parallel through joblib.")
def train_command(symbols, timeframes, model, days, data_dir, models_dir, database_url, quick, seed, folds, end,
                  jobs):
    """Train, walk-forward evaluate and version models; the last line printed is the new version id."""
    from crypto_predictor.cli import resolve_symbols
    from crypto_predictor.market.store import CandleStore
    from crypto_predictor.training import Skipped, TrainOptions, expand_kinds, train_run

    config = Config()
    url = database_url or config.DATABASE_URL
    tfs = _timeframes(timeframes)
    try:
        store = CandleStore(url)
        store.init_schema()
        available = None
        if data_dir:
            available = _ingest(store, data_dir, symbols)
        assets = resolve_symbols(symbols, available or _stored_assets(store))
        if not assets:
            raise click.ClickException("no candles stored; pass --data-dir or run `python -m crypto_predictor ingest`")
        options = TrainOptions(kinds=expand_kinds(model), quick=quick, seed=seed, days=days, n_folds=folds, end=end)
        started = time.perf_counter()
        with click.progressbar(length=len(assets) * len(tfs), label="training", file=sys.stderr) as bar:
            skipped = []

            def done(r):
                if isinstance(r, Skipped):
                    skipped.append(r)
                bar.update(1, f"{r.asset} {r.timeframe}")

            version, results = train_run(url, assets, tfs, options, models_dir or config.MODELS_DIR, n_jobs=jobs,
                                         on_done=done)
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc
    for line in format_summary(results):
        click.echo(line)
    for s in skipped:
        click.echo(f"skipped {s.asset} {s.timeframe}: {s.reason}")
    click.echo(f"trained {len(results)} pair(s) x {len(options.kinds)} kind(s) in {time.perf_counter() - started:.1f}s")
    click.echo(version)


def _stored_assets(store) -> list[str]:
    from sqlalchemy import select

    from crypto_predictor.market.store import candles
    from crypto_predictor.symbols import supported_ids

    with store.engine.connect() as conn:
        stored = {row[0] for row in conn.execute(select(candles.c.asset).distinct())}
    return [a for a in supported_ids() if a in stored]


def _ingest(store, data_dir, symbols) -> list[str]:
    from crypto_predictor.cli import resolve_symbols
    from crypto_predictor.market.csvdir import CsvSource
    from crypto_predictor.market.ingest import ingest_asset
    from crypto_predictor.datasets import context_asset

    source = CsvSource(data_dir)
    wanted = resolve_symbols(symbols, source.available("1h"))
    # Cross-asset features need the context asset's candles too.
    needed = list(dict.fromkeys(wanted + [context_asset(a) for a in wanted if context_asset(a) in source.available("1h")]))
    for asset in needed:
        report = ingest_asset(source, store, asset)
        click.echo(f"ingested {asset}: {report.inserted} new, {report.updated} updated, "
                   f"{report.validation.rejected_total} rejected", err=True)
    return wanted
