"""`python -m crypto_predictor`: init the store, ingest market data (train/evaluate/deploy join later)."""

from __future__ import annotations

import sys
import time

import click
import pandas as pd

from crypto_predictor.config import MARKET_SOURCES, Config
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.symbols import INTERVALS_MS, resolve, supported_ids

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
    config = Config()
    url = database_url or config.DATABASE_URL
    try:
        store = _store_for(url)
        tables = store.init_schema()
    except Exception as exc:  # a bad URL or unreachable server: one line, not a traceback
        raise click.ClickException(f"cannot initialise {url}: {exc}") from exc
    click.echo(f"schema ready at {store.engine.url.render_as_string(hide_password=True)}: {', '.join(tables)}")


def _store_for(url):
    from crypto_predictor.market.store import CandleStore

    return CandleStore(url)


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

    config = Config()
    source_name = source or config.MARKET_DATA_SOURCE
    try:
        src = get_source(source_name, config, data_dir=data_dir)
        available = src.available(interval) if source_name == "csv" else None
        assets = resolve_symbols(symbols, available)
        store = _store_for(database_url or config.DATABASE_URL)
        store.init_schema()
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
                latest = store.latest_time(asset, interval)
                if days is not None:
                    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days)
                elif latest is not None:
                    start = latest + pd.Timedelta(milliseconds=INTERVALS_MS[interval])
                else:
                    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=DEFAULT_LIVE_DAYS)
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
