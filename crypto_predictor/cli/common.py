"""What every command shares: the one store opener, symbol and time options, and the CSV ingest
that ``train --data-dir`` and ``evaluate --data-dir`` run first.

Bad settings, an unreachable database or a domain error end a command as one ``Error:`` line
(a ClickException), never a traceback.
"""

from __future__ import annotations

import click
import pandas as pd
from sqlalchemy.engine import make_url

from crypto_predictor.config import Config
from crypto_predictor.datasets import GLOBAL_CONTEXT, context_asset
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.market import fear_greed
from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.market.ingest import ingest_asset
from crypto_predictor.market.sentiment import SentimentStore, ingest_sentiment
from crypto_predictor.market.store import CandleStore
from crypto_predictor.symbols import core_ids, resolve, supported_ids
from crypto_predictor.timeutil import to_utc


def load_config() -> Config:
    """Settings from the environment; a malformed value is one readable line."""
    try:
        return Config()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable URL: nothing trustworthy to show
        return "(unparsable DATABASE_URL)"


def open_store(database_url=None) -> tuple[Config, CandleStore]:
    """(config, store with its schema created) for ``database_url``, else DATABASE_URL."""
    config = load_config()
    url = database_url or config.DATABASE_URL
    try:
        store = CandleStore(url)
        store.init_schema()
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from exc
    except Exception as exc:  # bad URL, unreachable server, unwritable file
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise click.ClickException(f"cannot open the candle store {hide_password(url)}: {first}") from exc
    config.DATABASE_URL = url
    return config, store


def resolve_symbols(symbols, available=None) -> list[str]:
    """Asset ids for the --symbol values: 'all' (or none) means every core asset, 'universe' every one of
    the 174 (each limited to ``available`` when given), else the assets named."""
    words = {s.lower() for s in symbols or ()}
    if not symbols or words & {"all", "universe"}:
        pool = supported_ids() if "universe" in words else core_ids()
        return [a for a in pool if available is None or a in set(available)]
    return list(dict.fromkeys(resolve(s).id for s in symbols))


def stored_assets(store) -> list[str]:
    """Supported assets that have candles in the store, in the supported order."""
    stored = store.assets()
    return [a for a in supported_ids() if a in stored]


def ingest_csv(store, data_dir, symbols, sentiment: bool = False) -> list[str]:
    """Ingest ``symbols`` (and their context assets) from a CSV directory, and with ``sentiment`` the
    Fear & Greed file beside it; returns the wanted assets."""
    source = CsvSource(data_dir)
    have = source.available("1h")
    wanted = resolve_symbols(symbols, have)
    # Cross-asset features need the context asset's candles too.
    context = [context_asset(a) for a in wanted] + list(GLOBAL_CONTEXT)
    needed = list(dict.fromkeys(wanted + [a for a in context if a in have]))
    for asset in needed:
        report = ingest_asset(source, store, asset)
        click.echo(f"ingested {asset}: {report.inserted} new, {report.updated} updated, "
                   f"{report.validation.rejected_total} rejected", err=True)
    if sentiment:
        report = ingest_sentiment(fear_greed.read_csv(data_dir), SentimentStore(store.engine))
        click.echo(f"ingested {report.index}: {report.inserted} new days, {sum(report.rejected.values())} rejected",
                   err=True)
    return wanted


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


AS_OF = click.option("--as-of", "now", default=None, metavar="ISO_TIME", callback=_as_of,
                     help="Take this UTC time as now (replays and tests); default: the clock.")
DATABASE_URL = click.option("--database-url", envvar="DATABASE_URL", default=None,
                            help="Store URL (default: DATABASE_URL or a SQLite file under instance/).")


SCHEDULER = click.option(
    "--scheduler", default=None, envvar="DASK_SCHEDULER_ADDRESS", show_envvar=True,
    help="Dask scheduler (tcp://host:8786) to fan the fits out on; its workers need this image and DATABASE_URL. "
         "Default: local processes (--jobs).")


def open_fanout(scheduler, jobs):
    """The Dask client or the local pool (``training.fanout``); an unreachable scheduler is one Error: line."""
    from crypto_predictor.training.fanout import open_fanout as opened  # late: distributed only when asked

    try:
        fanout = opened(scheduler, jobs)
    except (OSError, TimeoutError, ValueError) as exc:
        raise click.ClickException(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    click.echo(f"fits run on {fanout.describe()}", err=True)
    return fanout
