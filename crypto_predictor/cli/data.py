"""``init`` and ``ingest``: create the schema, and load validated candles from a source into the store."""

from __future__ import annotations

import sys
import time

import click
import pandas as pd

from crypto_predictor.cli.common import AS_OF, open_store, resolve_symbols
from crypto_predictor.config import MARKET_SOURCES, SENTIMENT_SOURCE
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.market import fear_greed, get_source
from crypto_predictor.market.ingest import ingest_asset, resume_start
from crypto_predictor.market.sentiment import SentimentStore, catch_up_limit, ingest_sentiment
from crypto_predictor.storage.tables import metadata
from crypto_predictor.symbols import INTERVALS_MS

DEFAULT_LIVE_DAYS = 30


@click.command()
@click.option("--database-url", envvar="DATABASE_URL", default=None,
              help="SQLAlchemy URL of the store (default: DATABASE_URL or a SQLite file under instance/).")
def init(database_url):
    """Create the database schema (idempotent)."""
    _config, store = open_store(database_url)
    click.echo(f"schema ready at {store.engine.url.render_as_string(hide_password=True)}: "
               f"{', '.join(sorted(metadata.tables))}")


@click.command()
@click.option("--source", type=click.Choice(MARKET_SOURCES + (SENTIMENT_SOURCE,)), default=None,
              help="Where candles come from (default: MARKET_DATA_SOURCE, else binance); fear-greed: the daily "
                   "Fear & Greed Index instead of candles (from FEAR_GREED_BASE_URL, or --data-dir's fear_greed.csv).")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Directory of <PAIR>-<interval>.csv[.gz] files for --source csv (default: MARKET_DATA_DIR); "
                   "with fear-greed: fear_greed.csv, or a folder holding it (or its sentiment/).")
@click.option("--symbol", "symbols", multiple=True,
              help="Asset to ingest (bitcoin, BTC or BTCUSDT); repeatable; 'all' or none = every core asset "
                   "available, 'universe' = every one of the 174.")
@click.option("--interval", default="1h", show_default=True, type=click.Choice(list(INTERVALS_MS)),
              help="Candle interval.")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Only the last N days. Live sources default to catching up from the newest stored "
                   f"candle, or {DEFAULT_LIVE_DAYS} days on an empty store; csv defaults to the whole file.")
@click.option("--revise", is_flag=True,
              help="Let rows that differ from stored candles overwrite them (a provider's or file's correction); "
                   "without it they are kept apart and reported.")
@AS_OF
@click.option("--database-url", envvar="DATABASE_URL", default=None, help="Store URL (default: DATABASE_URL).")
def ingest(source, data_dir, symbols, interval, days, revise, now, database_url):
    """Fetch candles, validate them, store them and print a report per asset."""
    config, store = open_store(database_url)
    clock = (lambda: now.timestamp()) if now is not None else time.time
    if source == SENTIMENT_SOURCE:
        return _ingest_sentiment(config, store, data_dir, days, revise, clock)
    source_name = source or config.MARKET_DATA_SOURCE
    try:
        src = get_source(source_name, config, data_dir=data_dir, clock=clock)
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
                now_ts = pd.Timestamp(clock(), unit="s", tz="UTC")
                start = (now_ts - pd.Timedelta(days=days) if days is not None
                         else resume_start(store, asset, interval, now_ts, DEFAULT_LIVE_DAYS))
            try:
                report = ingest_asset(src, store, asset, interval=interval, start=start, last_days=days,
                                      revise=revise)
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


def _ingest_sentiment(config, store, data_dir, days, revise, clock) -> None:
    """ingest --source fear-greed: the shared CSV with --data-dir, else the API (catching up, or --days)."""
    sentiment = SentimentStore(store.engine)
    started = time.perf_counter()
    try:
        if data_dir is not None:
            result = fear_greed.read_csv(data_dir)
            if days is not None and len(result.frame):
                result.frame = result.frame[result.frame["day"] > result.frame["day"].max() - pd.Timedelta(days=days)]
        else:
            limit = days if days is not None else catch_up_limit(sentiment, pd.Timestamp(clock(), unit="s", tz="UTC"))
            result = fear_greed.FearGreedSource(config, clock=clock).fetch(limit)
        report = ingest_sentiment(result, sentiment, revise=revise)
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc
    for line in report.lines():
        click.echo(line)
    click.echo(f"ingested {report.received} day(s) of {report.index} in {time.perf_counter() - started:.2f}s")
