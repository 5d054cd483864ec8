"""`python -m crypto_predictor`: init, ingest, train, evaluate, deploy, and the cron jobs refresh, verify, retrain."""

from __future__ import annotations

import sys
import time

import click
import pandas as pd

from crypto_predictor.config import MARKET_SOURCES, Config
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.market.frames import to_utc
from crypto_predictor.symbols import INTERVALS_MS, TIMEFRAMES, resolve, supported_ids

DEFAULT_LIVE_DAYS = 30


def resolve_symbols(symbols, available=None) -> list[str]:
    """Asset ids for the --symbol values ('all' or none means every supported/available one)."""
    if not symbols or "all" in [s.lower() for s in symbols]:
        return list(available) if available is not None else supported_ids()
    return list(dict.fromkeys(resolve(s).id for s in symbols))


@click.group()
def cli():
    """crypto-predictor: market data, training, evaluation and deployment."""


@cli.command()
@click.option("--database-url", envvar="DATABASE_URL", default=None,
              help="SQLAlchemy URL of the store (default: DATABASE_URL or a SQLite file under instance/).")
def init(database_url):
    """Create the database schema (idempotent)."""
    from crypto_predictor.db import metadata

    _config, store = _open_store(database_url)
    click.echo(f"schema ready at {store.engine.url.render_as_string(hide_password=True)}: "
               f"{', '.join(sorted(metadata.tables))}")


def _open_store(database_url):
    """(config, store with its schema created); bad settings or an unreachable database end as one error line."""
    from crypto_predictor.market.store import CandleStore

    try:
        config = Config()
        if database_url:
            config.DATABASE_URL = database_url
        store = CandleStore(config.DATABASE_URL)
        store.init_schema()
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc
    except Exception as exc:  # bad environment value, bad URL, unreachable database
        raise click.ClickException(str(exc).splitlines()[0]) from exc
    return config, store


@cli.command()
@click.option("--source", type=click.Choice(MARKET_SOURCES), default=None,
              help="Where candles come from (default: MARKET_DATA_SOURCE, else binance).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory of <PAIR>-<interval>.csv[.gz] files for --source csv (default: MARKET_DATA_DIR).")
@click.option("--symbol", "symbols", multiple=True,
              help="Asset to ingest (bitcoin, BTC or BTCUSDT); repeatable; 'all' or none = every one available.")
@click.option("--interval", default="1h", show_default=True, type=click.Choice(list(INTERVALS_MS)),
              help="Candle interval.")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Only the last N days. Live sources default to catching up from the newest stored "
                   f"candle, or {DEFAULT_LIVE_DAYS} days on an empty store; csv defaults to the whole file.")
@click.option("--database-url", envvar="DATABASE_URL", default=None, help="Store URL (default: DATABASE_URL).")
def ingest(source, data_dir, symbols, interval, days, database_url):
    """Fetch candles, validate them, store them and print a report per asset."""
    from crypto_predictor.market import get_source
    from crypto_predictor.market.ingest import ingest_asset

    from crypto_predictor.market.ingest import resume_start

    config, store = _open_store(database_url)
    source_name = source or config.MARKET_DATA_SOURCE
    try:
        src = get_source(source_name, config, data_dir=data_dir)
        available = src.available(interval) if source_name == "csv" else None
        assets = resolve_symbols(symbols, available)
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc
    if not assets:
        raise click.ClickException(f"no {interval} files for any supported asset in {data_dir or config.MARKET_DATA_DIR}")

    started, total_rows, reports = time.perf_counter(), 0, []
    with click.progressbar(assets, label=f"ingest {source_name}", file=sys.stderr,
                           item_show_func=lambda a: a or "") as bar:
        for asset in bar:
            start = None
            if source_name != "csv":
                now = pd.Timestamp.now(tz="UTC")
                start = (now - pd.Timedelta(days=days) if days is not None
                         else resume_start(store, asset, interval, now, DEFAULT_LIVE_DAYS))
            try:
                report = ingest_asset(src, store, asset, interval=interval, start=start, last_days=days)
            except CryptoPredictorError as exc:
                raise click.ClickException(f"{asset}: {exc.message}") from exc
            reports.append(report)
            total_rows += report.received
    elapsed = time.perf_counter() - started
    for report in reports:
        for line in report.lines():
            click.echo(line)
    rate = total_rows / elapsed if elapsed > 0 else float("inf")
    click.echo(f"ingested {len(reports)} asset(s), {total_rows} rows in {elapsed:.2f}s ({rate:,.0f} rows/s)")


# ---------------------------------------------------------------- jobs (cron): refresh, verify, retrain

def _as_of(_ctx, _param, value):
    """--as-of: an ISO time taken as 'now' (replaying a past day, tests); None = the clock."""
    if value is None:
        return None
    try:
        ts = to_utc(value)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(f"not an ISO time: {value!r}") from exc
    if ts is pd.NaT:
        raise click.BadParameter(f"not an ISO time: {value!r}")
    return ts


def _job_lock(config, store, name):
    from crypto_predictor.jobs.lock import JobLock

    return JobLock(store.engine, name, config.JOB_LOCK_TTL_SECONDS)


_AS_OF = click.option("--as-of", "now", default=None, metavar="ISO_TIME", callback=_as_of,
                      help="Take this UTC time as now (replays and tests); default: the clock.")
_DB = click.option("--database-url", envvar="DATABASE_URL", default=None, help="Store URL (default: DATABASE_URL).")


@cli.command()
@click.option("--source", type=click.Choice(MARKET_SOURCES), default=None,
              help="Where candles come from (default: MARKET_DATA_SOURCE).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory of <PAIR>-<interval>.csv[.gz] files for --source csv (default: MARKET_DATA_DIR).")
@click.option("--interval", default="1h", show_default=True, type=click.Choice(list(INTERVALS_MS)),
              help="Candle interval.")
@click.option("--initial-days", type=click.IntRange(min=1), default=DEFAULT_LIVE_DAYS, show_default=True,
              help="How far back to start for an asset with nothing stored yet.")
@_AS_OF
@_DB
def refresh(source, data_dir, interval, initial_days, now, database_url):
    """Ingest the newest closed candles of every configured asset (REFRESH_ASSETS, default all)."""
    from crypto_predictor.jobs import JobLocked
    from crypto_predictor.jobs.refresh import configured_assets, refresh as run_refresh, summary_line
    from crypto_predictor.market import get_source

    config, store = _open_store(database_url)
    name = source or config.MARKET_DATA_SOURCE
    clock = (lambda: now.timestamp()) if now is not None else time.time
    started = time.perf_counter()
    try:
        with _job_lock(config, store, "refresh"):
            src = get_source(name, config, data_dir=data_dir, clock=clock)
            assets = configured_assets(config, name, src, interval)
            if not assets:
                raise click.ClickException(f"no assets to refresh from {name} (set REFRESH_ASSETS)")
            results = run_refresh(src, store, assets, interval=interval, now=now, initial_days=initial_days)
    except (JobLocked, CryptoPredictorError) as exc:
        raise click.ClickException(exc.message) from exc
    for result in results:
        click.echo(result.line())
    click.echo(summary_line(results, time.perf_counter() - started))
    if any(r.error for r in results):
        sys.exit(1)  # cron sees the failure; the other assets were still refreshed


@cli.command()
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Score only predictions whose target time fell in the last N days (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@_AS_OF
@_DB
def verify(days, as_json, now, database_url):
    """Fill realised prices into the prediction log; print live accuracy and interval coverage."""
    import json

    from crypto_predictor.jobs import JobLocked
    from crypto_predictor.jobs.verify import format_table, run_verify

    config, store = _open_store(database_url)
    try:
        with _job_lock(config, store, "verify"):
            report = run_verify(store, days=days, now=now)
    except (JobLocked, CryptoPredictorError) as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    click.echo(f"filled {report['filled']} realised price(s); {report['pending']} prediction(s) still pending")
    click.echo(format_table(report["groups"]) if report["groups"] else "no realised predictions to score yet")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show the decision and what would be trained; train nothing.")
@click.option("--force", is_flag=True, help="Retrain even if live accuracy is fine.")
@click.option("--promote", is_flag=True, help="Also point production at the new version (default: challenger only).")
@click.option("--symbol", "symbols", multiple=True,
              help="Asset to train; repeatable (default: the production version's assets).")
@click.option("--timeframe", "timeframes", multiple=True, type=click.Choice(list(TIMEFRAMES)),
              help="Timeframe to train; repeatable (default: the production version's).")
@click.option("--model", default=None, type=click.Choice(["linear", "random_forest", "xgboost", "lstm", "ensemble",
                                                          "all"]),
              help="Model kind (default: the production version's kinds).")
@click.option("--days", type=click.IntRange(min=2), default=None,
              help="Train on the newest N days (default: what production was trained with).")
@click.option("--quick", is_flag=True, help="Tiny models and 2 folds (smoke runs, tests).")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed for every model.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="(asset, timeframe) trainings run in parallel.")
@click.option("--models-dir", default=None, help="Model store (default: MODELS_DIR).")
@_AS_OF
@_DB
def retrain(dry_run, force, promote, symbols, timeframes, model, days, quick, seed, jobs, models_dir, now,
            database_url):
    """Train a challenger when production's live accuracy or 80% coverage falls below the thresholds."""
    from crypto_predictor import prediction_log as plog
    from crypto_predictor.jobs import JobLocked
    from crypto_predictor.jobs.retrain import decide, plan, train_and_deploy
    from crypto_predictor.train_cli import _stored_assets, format_summary
    from crypto_predictor.training import TrainOptions, expand_kinds

    config, store = _open_store(database_url)
    root = models_dir or config.MODELS_DIR
    try:
        with _job_lock(config, store, "retrain"):
            plog.verify(store)  # score on every outcome known by now
            decision = decide(store.engine, root, config, now=now, force=force)
            for line in decision.lines():
                click.echo(line)
            if not decision.retrain:
                click.echo("nothing triggered: no retraining")
                return
            what = plan(root, decision.production, resolve_symbols(symbols) if symbols else None,
                        list(dict.fromkeys(timeframes)) or None, list(expand_kinds(model)) if model else None,
                        days, stored_assets=_stored_assets(store))
            if not (what.assets and what.timeframes and what.kinds):
                raise click.ClickException("nothing to train: no production version to copy; pass --symbol, "
                                           "--timeframe and --model")
            target = "challenger and production" if promote else "challenger"
            summary = (f"{', '.join(what.assets)} x {', '.join(what.timeframes)} x {', '.join(what.kinds)}"
                       f"{' (quick)' if quick else ''}, days={what.days or 'all'}")
            if dry_run:
                click.echo(f"dry run: would train {summary} and deploy it as {target}; nothing trained")
                return
            click.echo(f"training {summary}", err=True)
            options = TrainOptions(kinds=tuple(what.kinds), quick=quick, seed=seed, days=what.days,
                                   end=None if now is None else now.isoformat())
            done = train_and_deploy(config.DATABASE_URL, root, decision, what, options, promote=promote, n_jobs=jobs)
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


def _register_commands():
    """train/evaluate/deploy live in their own modules; the group only names them."""
    from crypto_predictor.deploy import deploy_command
    from crypto_predictor.evaluate_cli import evaluate_command
    from crypto_predictor.train_cli import train_command

    cli.add_command(train_command, "train")
    cli.add_command(evaluate_command, "evaluate")
    cli.add_command(deploy_command, "deploy")


_register_commands()


def main():
    cli(prog_name="python -m crypto_predictor")
