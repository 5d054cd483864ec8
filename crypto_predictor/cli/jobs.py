"""The cron jobs as commands: ``refresh`` (newest candles), ``verify`` (live accuracy), ``retrain``.

Each takes its job's database lock (``storage.lock``), so a second concurrent run exits 1 naming the holder.
"""

from __future__ import annotations

import json
import sys
import time

import click

from crypto_predictor.cli.common import (AS_OF, DATABASE_URL, SCHEDULER, open_fanout, open_store, resolve_symbols,
                                         stored_assets)
from crypto_predictor.cli.data import DEFAULT_LIVE_DAYS
from crypto_predictor.cli.train import MODEL_CHOICES, format_summary
from crypto_predictor.config import MARKET_SOURCES
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.storage.job_runs import record_run
from crypto_predictor.storage.lock import JobLock, JobLocked
from crypto_predictor.jobs.refresh import configured_assets, refresh as run_refresh, refresh_sentiment, summary_line
from crypto_predictor.jobs.retrain import decide, plan
from crypto_predictor.jobs.verify import format_table, run_verify
from crypto_predictor.market import get_source
from crypto_predictor.serving.prediction_log import verify as verify_predictions
from crypto_predictor.symbols import INTERVALS_MS, TIMEFRAMES


def _job_lock(config, store, name):
    return JobLock(store.engine, name, config.JOB_LOCK_TTL_SECONDS)


@click.command()
@click.option("--source", type=click.Choice(MARKET_SOURCES), default=None,
              help="Where candles come from (default: MARKET_DATA_SOURCE).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory of <PAIR>-<interval>.csv[.gz] files for --source csv (default: MARKET_DATA_DIR).")
@click.option("--interval", default="1h", show_default=True, type=click.Choice(list(INTERVALS_MS)),
              help="Candle interval.")
@click.option("--initial-days", type=click.IntRange(min=1), default=DEFAULT_LIVE_DAYS, show_default=True,
              help="How far back to start for an asset with nothing stored yet.")
@AS_OF
@DATABASE_URL
def refresh(source, data_dir, interval, initial_days, now, database_url):
    """Ingest the newest closed candles of every configured asset (REFRESH_ASSETS, default all)."""
    config, store = open_store(database_url)
    name = source or config.MARKET_DATA_SOURCE
    clock = (lambda: now.timestamp()) if now is not None else time.time
    started = time.perf_counter()
    try:
        with _job_lock(config, store, "refresh"), record_run(store.engine, "refresh") as run:
            src = get_source(name, config, data_dir=data_dir, clock=clock)
            assets = configured_assets(config, name, src, interval)
            if not assets:
                raise click.ClickException(f"no assets to refresh from {name} (set REFRESH_ASSETS)")
            # The index first: a worker building features for the new candles then finds its newest day.
            sentiment_line = refresh_sentiment(config, name, data_dir, store, now)
            results = run_refresh(src, store, assets, interval=interval, now=now, initial_days=initial_days)
            summary = summary_line(results, time.perf_counter() - started)
            run.summary, run.ok = f"{summary}; {sentiment_line}", not any(r.error for r in results)
    except (JobLocked, CryptoPredictorError) as exc:
        raise click.ClickException(exc.message) from exc
    for result in results:
        click.echo(result.line())
    click.echo(summary)
    click.echo(sentiment_line)
    if not run.ok:
        sys.exit(1)  # cron sees the failure; the other assets were still refreshed


@click.command()
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Score only predictions whose target time fell in the last N days (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@AS_OF
@DATABASE_URL
def verify(days, as_json, now, database_url):
    """Fill realised prices into the prediction log; print live accuracy and interval coverage."""
    config, store = open_store(database_url)
    try:
        with _job_lock(config, store, "verify"), record_run(store.engine, "verify") as run:
            report = run_verify(store, days=days, now=now)
            run.summary = (f"filled {report['filled']} realised price(s), {report['pending']} pending, "
                           f"{len(report['groups'])} group(s) scored")
    except (JobLocked, CryptoPredictorError) as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    click.echo(f"filled {report['filled']} realised price(s); {report['pending']} prediction(s) still pending")
    click.echo(format_table(report["groups"]) if report["groups"] else "no realised predictions to score yet")


@click.command()
@click.option("--dry-run", is_flag=True, help="Show the decision and what would be trained; train nothing.")
@click.option("--force", is_flag=True, help="Retrain even if live accuracy is fine.")
@click.option("--promote", is_flag=True, help="Also point production at the new version (default: challenger only).")
@click.option("--symbol", "symbols", multiple=True,
              help="Asset to train; repeatable (default: the production version's assets).")
@click.option("--timeframe", "timeframes", multiple=True, type=click.Choice(list(TIMEFRAMES)),
              help="Timeframe to train; repeatable (default: the production version's).")
@click.option("--model", default=None, type=click.Choice(MODEL_CHOICES),
              help="Model kind (default: the production version's kinds).")
@click.option("--days", type=click.IntRange(min=2), default=None,
              help="Train on the newest N days (default: what production was trained with).")
@click.option("--quick", is_flag=True, help="Tiny models and 2 folds (smoke runs, tests).")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed for every model.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="(asset, timeframe) trainings run in parallel.")
@click.option("--models-dir", default=None, help="Model store (default: MODELS_DIR).")
@SCHEDULER
@AS_OF
@DATABASE_URL
def retrain(dry_run, force, promote, symbols, timeframes, model, days, quick, seed, jobs, models_dir, scheduler, now,
            database_url):
    """Train a challenger when production's live accuracy or 80% coverage falls below the thresholds."""
    # late: models and scikit-learn load only for retrain, not for refresh and verify
    from crypto_predictor.jobs.retrain import train_and_deploy
    from crypto_predictor.training.pipeline import TrainOptions, expand_kinds

    config, store = open_store(database_url)
    root = models_dir or config.MODELS_DIR
    try:
        with _job_lock(config, store, "retrain"), record_run(store.engine, "retrain") as run:
            verify_predictions(store)  # score on every outcome known by now
            decision = decide(store.engine, root, config, now=now, force=force)
            for line in decision.lines():
                click.echo(line)
            run.summary = f"{len(decision.triggers)} trigger(s); nothing retrained"
            if not decision.retrain:
                click.echo("nothing triggered: no retraining")
                return
            what = plan(root, decision.production, resolve_symbols(symbols) if symbols else None,
                        list(dict.fromkeys(timeframes)) or None, list(expand_kinds(model)) if model else None,
                        days, stored_assets=stored_assets(store))
            if not (what.assets and what.timeframes and what.kinds):
                raise click.ClickException("nothing to train: no production version to copy; pass --symbol, "
                                           "--timeframe and --model")
            target = "challenger and production" if promote else "challenger"
            summary = (f"{', '.join(what.assets)} x {', '.join(what.timeframes)} x {', '.join(what.kinds)}"
                       f"{' (quick)' if quick else ''}{' with sentiment' if what.sentiment else ''}, "
                       f"days={what.days or 'all'}")
            if dry_run:
                run.summary = f"dry run: would train {summary}"
                click.echo(f"dry run: would train {summary} and deploy it as {target}; nothing trained")
                return
            click.echo(f"training {summary}", err=True)
            options = TrainOptions(kinds=tuple(what.kinds), quick=quick, seed=seed, days=what.days,
                                   end=None if now is None else now.isoformat(), design=what.design,
                                   sentiment=what.sentiment,
                                   **({"members": what.members} if what.members else {}))
            with open_fanout(scheduler, jobs) as fanout:
                done = train_and_deploy(config.DATABASE_URL, root, decision, what, options, promote=promote,
                                        n_jobs=jobs, fanout=fanout)
            run.summary = f"trained {done['version']} ({summary}) as {target}; {len(decision.triggers)} trigger(s)"
    except (JobLocked, CryptoPredictorError) as exc:
        raise click.ClickException(exc.message) from exc
    except OSError as exc:  # unwritable model store
        raise click.ClickException(str(exc)) from exc
    for line in format_summary(done["results"]):
        click.echo(line)
    for entry in done["switches"]:
        click.echo(f"{entry['alias']}: {entry['from'] or '(unset)'} -> {entry['to']}")
    why = "forced" if decision.forced and not decision.triggers else f"{len(decision.triggers)} trigger(s)"
    click.echo(f"recorded why ({why}) in {done['version']}/manifest.json under extra.retrain")
    click.echo(done["version"])
