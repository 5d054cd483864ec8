"""The refresh job: bring every configured asset's stored candles up to the newest closed one.

Each asset resumes one interval after its newest stored candle (or ``initial_days`` back on an
empty store), and nothing opening later than ``now - interval`` is asked for or kept, so the
candle still forming is never stored. The store's upsert skips rows it already holds, so a
repeated run inserts nothing. One asset failing (provider down, no csv file) is reported and
does not stop the others.

The Fear & Greed Index is caught up the same way, before the candles (``refresh_sentiment``): from
its API with a live market source, from the data directory's ``fear_greed.csv`` with csv, never
when FEAR_GREED_REFRESH is off. Its failure is one line and does not fail the job.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from crypto_predictor.errors import CryptoPredictorError, InvalidInput
from crypto_predictor.market import fear_greed
from crypto_predictor.market.ingest import catch_up
from crypto_predictor.market.sentiment import SentimentStore, catch_up_limit, ingest_sentiment
from crypto_predictor.timeutil import to_utc
from crypto_predictor.symbols import core_ids, resolve, supported_ids

DEFAULT_INITIAL_DAYS = 30


@dataclass
class AssetRefresh:
    asset: str
    report: object = None  # market.ingest.IngestReport when the asset was fetched
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.asset:<12} FAILED {self.error}"
        r = self.report
        span = "no new candles" if r.first is None else f"{r.first:%Y-%m-%d %H:%M} .. {r.last:%Y-%m-%d %H:%M}"
        return (f"{self.asset:<12} {r.interval} [{r.source}] received {r.received}, inserted {r.inserted}, "
                f"updated {r.updated}, rejected {r.validation.rejected_total}, {span}")


def configured_assets(config, source_name: str, source, interval: str) -> list[str]:
    """REFRESH_ASSETS when set ("universe": all 174 assets), else the core assets (a csv source: every
    asset it has a file for)."""
    if [a.lower() for a in config.REFRESH_ASSETS] == ["universe"]:
        return source.available(interval) if source_name == "csv" else supported_ids()
    if config.REFRESH_ASSETS:
        try:
            return list(dict.fromkeys(resolve(a).id for a in config.REFRESH_ASSETS))
        except CryptoPredictorError as exc:
            raise InvalidInput(f"REFRESH_ASSETS: {exc.message}") from exc
    if source_name == "csv":
        return source.available(interval)
    return core_ids()


def refresh(source, store, assets, interval: str = "1h", now=None, initial_days: int = DEFAULT_INITIAL_DAYS
            ) -> list[AssetRefresh]:
    """Ingest the closed candles each asset is missing; one result per asset, in order."""
    now = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    results = []
    for asset in assets:
        try:
            report = catch_up(source, store, asset, interval, now, initial_days)
        except CryptoPredictorError as exc:
            results.append(AssetRefresh(asset, error=exc.message))
            continue
        results.append(AssetRefresh(asset, report=report))
    return results


def summary_line(results: list[AssetRefresh], seconds: float) -> str:
    ok = [r for r in results if r.error is None]
    inserted = sum(r.report.inserted for r in ok)
    updated = sum(r.report.updated for r in ok)
    failed = len(results) - len(ok)
    return (f"refreshed {len(ok)}/{len(results)} asset(s): {inserted} inserted, {updated} updated"
            f"{f', {failed} failed' if failed else ''} in {seconds:.2f}s")


def refresh_sentiment(config, source_name: str, data_dir, store, now=None, clock=None) -> str:
    """Catch the stored Fear & Greed Index up; one line saying what happened (or why not)."""
    if not config.FEAR_GREED_REFRESH:
        return f"{fear_greed.INDEX:<12} skipped (FEAR_GREED_REFRESH is off)"
    now = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    target = SentimentStore(store.engine)
    try:
        if source_name == "csv":
            result = fear_greed.read_csv(data_dir or config.MARKET_DATA_DIR)
            result.frame = fear_greed.closed_days(result.frame, now)
        else:
            source = fear_greed.FearGreedSource(config, clock=clock or (lambda: now.timestamp()))
            result = source.fetch(catch_up_limit(target, now))
        report = ingest_sentiment(result, target)
    except CryptoPredictorError as exc:
        return f"{fear_greed.INDEX:<12} FAILED {exc.message}"
    span = "no days" if report.first is None else f"{report.first:%Y-%m-%d} .. {report.last:%Y-%m-%d}"
    rejected = sum(report.rejected.values())
    return (f"{fear_greed.INDEX:<12} 1d [{report.source}] received {report.received}, inserted {report.inserted}, "
            f"rejected {rejected}, missing days {sum(m[2] for m in report.missing_days)}, {span}")
