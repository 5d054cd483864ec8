"""Ingest: fetch from a source, validate, store, and report what happened per asset."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from crypto_predictor.market.store import CandleStore
from crypto_predictor.market.validation import ValidationReport, validate
from crypto_predictor.symbols import INTERVALS_MS


@dataclass
class IngestReport:
    asset: str
    interval: str
    source: str
    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_apart: int = 0  # rows that differ from stored candles, not written without revise
    kept_apart_times: list = field(default_factory=list)
    validation: ValidationReport = field(default_factory=ValidationReport)
    notes: list = field(default_factory=list)
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None

    @property
    def rejected(self) -> dict:
        return self.validation.rejected

    def lines(self) -> list[str]:
        v = self.validation
        span = f"{self.first:%Y-%m-%d %H:%M} .. {self.last:%Y-%m-%d %H:%M}" if self.first is not None else "no rows"
        rejected = ", ".join(f"{k}: {n}" for k, n in v.rejected.items()) or "none"
        out = [
            f"{self.asset} {self.interval} [{self.source}] {span}",
            f"  received {self.received}, inserted {self.inserted}, updated {self.updated}, "
            f"unchanged {self.unchanged}, exact duplicates {v.exact_duplicates}, "
            f"conflicting duplicates {len(v.conflicting_duplicates)}",
            f"  rejected {v.rejected_total} ({rejected})",
            f"  gaps {len(v.gaps)} ({v.missing_candles} missing candles), outliers flagged {len(v.outliers)}",
        ]
        if v.rejected_rows is not None:
            for row in v.rejected_rows.head(5).itertuples():
                out.append(f"    rejected {row.open_time}: {row.reason} "
                           f"(o={row.open} h={row.high} l={row.low} c={row.close} v={row.volume})")
        for when, why in v.outliers[:3]:
            out.append(f"    outlier {when}: {why}")
        for first, last, missing in sorted(v.gaps, key=lambda g: -g[2])[:3]:
            out.append(f"    gap {first} .. {last} ({missing} missing)")
        if self.kept_apart:
            times = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in self.kept_apart_times[:3])
            out.append(f"  kept apart {self.kept_apart} row(s) that would rewrite stored candles ({times}"
                       f"{', ...' if self.kept_apart > 3 else ''}); ingest again with --revise to overwrite")
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def resume_start(store: CandleStore, asset: str, interval: str, now: pd.Timestamp, initial_days) -> pd.Timestamp:
    """Where a live fetch picks up: one interval after the newest stored candle, else ``initial_days`` before now."""
    latest = store.latest_time(asset, interval)
    if latest is None:
        return now - pd.Timedelta(days=initial_days)
    return latest + pd.Timedelta(milliseconds=INTERVALS_MS[interval])


def last_closed_open(now: pd.Timestamp, interval: str) -> pd.Timestamp:
    """Open time of the newest candle that has closed by ``now``."""
    step = pd.Timedelta(milliseconds=INTERVALS_MS[interval])
    return now.floor(step) - step


def catch_up(source, store: CandleStore, asset: str, interval: str, now: pd.Timestamp,
             initial_days: int) -> IngestReport:
    """Ingest the closed candles ``asset`` is missing up to ``now`` (resuming after the newest stored
    one); an asset already up to date does not even ask the provider."""
    start = resume_start(store, asset, interval, now, initial_days)
    end = last_closed_open(now, interval)
    if start > end:
        return IngestReport(asset, interval, getattr(source, "name", "?"))
    return ingest_asset(source, store, asset, interval=interval, start=start, end=end)


def ingest_asset(source, store: CandleStore, symbol, interval="1h", start=None, end=None,
                 last_days=None, progress=None, revise: bool = False) -> IngestReport:
    """Fetch, validate and store one asset; ``last_days`` keeps only the newest N days received;
    ``revise`` lets rows that differ from stored candles overwrite them (else they are kept apart)."""
    result = source.fetch(symbol, interval=interval, start=start, end=end, progress=progress)
    if last_days is not None and not result.candles.empty:
        newest = result.candles["open_time"].max()
        result.candles = result.candles[result.candles["open_time"] > newest - pd.Timedelta(days=last_days)]
    clean, validation = validate(result.candles, result.interval)
    counts = store.upsert(result.asset, result.interval, clean, result.source, revise=revise)
    report = IngestReport(result.asset, result.interval, result.source, received=len(result.candles),
                          validation=validation, notes=list(result.notes), **counts)
    if not clean.empty:
        report.first, report.last = clean["open_time"].iloc[0], clean["open_time"].iloc[-1]
    return report
