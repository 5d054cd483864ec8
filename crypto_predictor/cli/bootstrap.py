"""``bootstrap``: make an empty deployment ready (tables, candles, a production model); idempotent."""

from __future__ import annotations

import sys
import time

import click

from crypto_predictor.cli.common import AS_OF, DATABASE_URL, open_store
from crypto_predictor.config import MARKET_SOURCES
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.jobs.bootstrap import bootstrap
from crypto_predictor.market import get_source
from crypto_predictor.storage.lock import JobLock, JobLocked


@click.command(name="bootstrap")
@click.option("--source", type=click.Choice(MARKET_SOURCES), default=None,
              help="Where candles come from (default: MARKET_DATA_SOURCE).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory of <PAIR>-<interval>.csv[.gz] files for --source csv (default: MARKET_DATA_DIR).")
@click.option("--models-dir", default=None, help="Model store directory (default: MODELS_DIR).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True, help="Parallel training jobs.")
@AS_OF
@DATABASE_URL
def bootstrap_command(source, data_dir, models_dir, jobs, now, database_url):
    """Create the tables; ingest BOOTSTRAP_DAYS of candles if none are stored; train and deploy a
    production model if there is none. A second run changes nothing."""
    config, store = open_store(database_url)
    name = source or config.MARKET_DATA_SOURCE
    clock = (lambda: now.timestamp()) if now is not None else time.time
    try:
        store.init_schema()  # the lock table first: the lock below needs it
        with JobLock(store.engine, "bootstrap", config.JOB_LOCK_TTL_SECONDS):
            src = get_source(name, config, data_dir=data_dir, clock=clock)
            report = bootstrap(config, name, src, store, models_dir, now=now, n_jobs=jobs)
    except (JobLocked, CryptoPredictorError) as exc:
        raise click.ClickException(exc.message) from exc
    for line in report.lines:
        click.echo(line)
    if report.failed:
        sys.exit(1)
