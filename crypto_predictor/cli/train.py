"""`train_model.py`: walk-forward evaluate, fit and version models into a new bundle."""

from __future__ import annotations

import sys
import time

import click

from crypto_predictor.cli.common import SCHEDULER, ingest_csv, open_fanout, open_store, resolve_symbols, stored_assets
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
              help="Asset (bitcoin, BTC, BTCUSDT); repeatable; 'all' = every core asset with stored (or --data-dir) "
                   "data, 'universe' = every one of the 174.")
@click.option("--timeframe", "timeframes", multiple=True, default=("all",), show_default=True,
              help=f"Prediction timeframe ({', '.join(TIMEFRAMES)}); repeatable; 'all' = every one.")
@click.option("--model", type=click.Choice(MODEL_CHOICES), default="all", show_default=True,
              help="Model kind to train; 'all' trains linear, random_forest, xgboost and their ensemble (lstm only "
                   "when asked: it cost 6x the time and changed nothing served, README).")
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
@click.option("--design", type=click.Choice(["auto", "pair", "global"]), default="auto", show_default=True,
              help="pair: models per (asset, timeframe); global: one model per (timeframe, kind) fitted on the "
                   "pooled rows of every asset (no LSTM), serving assets with little history too; auto: per "
                   "timeframe the one that measured better (README).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="(asset, timeframe) trainings run in parallel through joblib.")
@click.option("--sentiment", is_flag=True,
              help="Add the Fear & Greed Index features (stored by ingest --source fear-greed; with --data-dir its "
                   "fear_greed.csv is ingested too). Off by default: measured not to improve the forecast (README).")
@SCHEDULER
def train_command(symbols, timeframes, model, days, data_dir, models_dir, database_url, quick, seed, folds, end,
                  design, jobs, sentiment, scheduler):
    """Train, walk-forward evaluate and version models; the last line printed is the new version id."""
    # late: models and scikit-learn load only for the command that trains, not for every CLI start
    from crypto_predictor.training.pipeline import Skipped, TrainOptions, expand_kinds, train_run

    tfs = _timeframes(timeframes)
    config, store = open_store(database_url)
    try:
        available = None
        if data_dir:
            available = ingest_csv(store, data_dir, symbols, sentiment=sentiment)
        assets = resolve_symbols(symbols, available or stored_assets(store))
        if not assets:
            raise click.ClickException("no candles stored; pass --data-dir or run `python -m crypto_predictor ingest`")
        options = TrainOptions(kinds=expand_kinds(model), quick=quick, seed=seed, days=days, n_folds=folds, end=end,
                               design=design, sentiment=sentiment)
        started = time.perf_counter()
        fanout = open_fanout(scheduler, jobs)
        with fanout, click.progressbar(length=len(assets) * len(tfs), label="training",
                                                      file=sys.stderr) as bar:
            skipped = []

            def done(r):
                if isinstance(r, Skipped):
                    skipped.append(r)
                bar.update(1, f"{r.asset} {r.timeframe}")

            version, results = train_run(config.DATABASE_URL, assets, tfs, options, models_dir or config.MODELS_DIR,
                                         n_jobs=jobs, on_done=done, fanout=fanout)
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc
    for line in format_summary(results):
        click.echo(line)
    for s in skipped:
        click.echo(f"skipped {s.asset} {s.timeframe}: {s.reason}")
    click.echo(f"trained {len(results)} pair(s) x {len(options.kinds)} kind(s) in {time.perf_counter() - started:.1f}s")
    if config.MODEL_STORE_URL:
        click.echo(f"pushed {version} to the shared model store")
    click.echo(version)
