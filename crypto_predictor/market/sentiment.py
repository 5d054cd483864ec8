"""Daily sentiment values: validated, stored idempotently like candles, read back as a series.

Validation rejects (and reports) values that are missing, not numbers or outside 0-100 and days
not at 00:00 UTC; exact duplicates are dropped, conflicting ones keep the last received; missing
days are listed (the API itself has none for 2018-04-14..16). The store writes new days, leaves
equal ones alone and keeps apart a day whose stored value differs unless ``revise`` is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import and_, bindparam, func, inspect, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError

from crypto_predictor.errors import DataNotFound
from crypto_predictor.market.fear_greed import INDEX, SentimentResult
from crypto_predictor.storage.tables import sentiment
from crypto_predictor.timeutil import to_utc

DAY = pd.Timedelta(days=1)


@dataclass
class SentimentReport:
    index: str
    source: str
    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_apart: int = 0
    exact_duplicates: int = 0
    conflicting_duplicates: int = 0
    rejected: dict = field(default_factory=dict)  # reason -> count
    missing_days: list = field(default_factory=list)  # (first, last, count)
    notes: list = field(default_factory=list)
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None

    def lines(self) -> list[str]:
        span = f"{self.first:%Y-%m-%d} .. {self.last:%Y-%m-%d}" if self.first is not None else "no days"
        rejected = ", ".join(f"{k}: {n}" for k, n in self.rejected.items()) or "none"
        n_missing = sum(m[2] for m in self.missing_days)
        out = [f"{self.index} 1d [{self.source}] {span}",
               f"  received {self.received}, inserted {self.inserted}, updated {self.updated}, "
               f"unchanged {self.unchanged}, exact duplicates {self.exact_duplicates}, "
               f"conflicting duplicates {self.conflicting_duplicates}",
               f"  rejected {sum(self.rejected.values())} ({rejected})",
               f"  missing days {n_missing}" + "".join(f"; {a:%Y-%m-%d} .. {b:%Y-%m-%d} ({n})"
                                                       for a, b, n in self.missing_days[:3])]
        if self.kept_apart:
            out.append(f"  kept apart {self.kept_apart} day(s) whose stored value differs; ingest again with "
                       "--revise to overwrite")
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def _reasons(frame: pd.DataFrame) -> pd.Series:
    v = frame["value"]
    checks = [("missing day", frame["day"].isna()),
              ("missing or non-numeric value", v.isna()),
              ("value outside 0-100", (v < 0) | (v > 100) | np.isinf(v)),
              ("day not at 00:00 UTC", frame["day"].notna() & (frame["day"] != frame["day"].dt.floor("1D")))]
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    for reason, mask in reversed(checks):  # the first check wins
        reasons[mask.fillna(False).to_numpy()] = reason
    return reasons


def missing_days(days: pd.Series) -> list[tuple]:
    """(first missing, last missing, count) for every hole in a sorted series of days."""
    d = pd.DatetimeIndex(days)
    gaps = []
    for before, after in zip(d[:-1], d[1:]):
        n = int((after - before) / DAY) - 1
        if n > 0:
            gaps.append((before + DAY, after - DAY, n))
    return gaps


def validate_sentiment(result: SentimentResult, report: SentimentReport) -> pd.DataFrame:
    """The clean days, oldest first; every decision counted in ``report``."""
    frame = result.frame.copy()
    report.received = len(frame)
    reasons = _reasons(frame)
    for reason, n in reasons.dropna().value_counts().items():
        report.rejected[reason] = int(n)
    frame = frame[reasons.isna().to_numpy()]
    exact = frame.duplicated(["day", "value"], keep="last")
    report.exact_duplicates = int(exact.sum())
    frame = frame[~exact.to_numpy()]
    conflicting = frame.duplicated("day", keep="last")
    report.conflicting_duplicates = int(conflicting.sum())
    frame = frame[~conflicting.to_numpy()].sort_values("day").reset_index(drop=True)
    report.missing_days = missing_days(frame["day"])
    if len(frame):
        report.first, report.last = frame["day"].iloc[0], frame["day"].iloc[-1]
    return frame


class SentimentStore:
    """The ``sentiment`` table of a candle store's engine."""

    def __init__(self, engine, index: str = INDEX):
        self.engine = engine
        self.index = index

    def _insert(self):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(sentiment).on_conflict_do_nothing(index_elements=["index_name", "day"])

    def upsert(self, frame: pd.DataFrame, source: str, report: SentimentReport, revise: bool = False) -> None:
        if frame.empty:
            return
        stored = self.load(frame["day"].min(), frame["day"].max())
        old = stored.reindex(pd.DatetimeIndex(frame["day"])).to_numpy()
        new = np.isnan(old)
        differs = ~new & (old != frame["value"].to_numpy())
        report.kept_apart = 0 if revise else int(differs.sum())
        rows = [{"index_name": self.index, "day": d.to_pydatetime(), "value": float(v),
                 "classification": None if pd.isna(c) else str(c), "source": source}
                for d, v, c in zip(frame["day"], frame["value"], frame["classification"])]
        with self.engine.begin() as conn:
            inserts = [r for r, is_new in zip(rows, new) if is_new]
            if inserts:
                result = conn.execute(self._insert(), inserts, execution_options={"preserve_rowcount": True})
                report.inserted = result.rowcount if result.rowcount >= 0 else len(inserts)
            changes = [r for r, d in zip(rows, differs) if d] if revise else []
            if changes:
                c = sentiment.c
                stmt = (update(sentiment).where(and_(c.index_name == bindparam("b_index"), c.day == bindparam("b_day")))
                        .values(value=bindparam("v_value"), classification=bindparam("v_class"),
                                source=bindparam("v_source")))
                conn.execute(stmt, [{"b_index": r["index_name"], "b_day": r["day"], "v_value": r["value"],
                                     "v_class": r["classification"], "v_source": source} for r in changes])
                report.updated = len(changes)
        report.unchanged = len(frame) - report.inserted - report.updated - report.kept_apart

    def _select(self, *columns, start=None, end=None):
        c = sentiment.c
        query = select(*columns).where(c.index_name == self.index)
        if start is not None:
            query = query.where(c.day >= to_utc(start).to_pydatetime())
        if end is not None:
            query = query.where(c.day <= to_utc(end).to_pydatetime())
        return query

    def load(self, start=None, end=None) -> pd.Series:
        """Values by UTC day (float), oldest first."""
        return self.frame(start, end)["value"]

    def _rows(self, query) -> list:
        """The query's rows; none when the table does not exist yet (a store made before it, read by a
        process that does not create tables), any other database failure raised as it is."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).all()
        except (OperationalError, ProgrammingError):
            if inspect(self.engine).has_table(sentiment.name):
                raise
            return []

    def frame(self, start=None, end=None) -> pd.DataFrame:
        """value and classification by UTC day, oldest first."""
        c = sentiment.c
        rows = self._rows(self._select(c.day, c.value, c.classification, start=start, end=end).order_by(c.day))
        index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], utc=True), name="day").as_unit("ns")
        return pd.DataFrame({"value": np.array([r[1] for r in rows], dtype="float64"),
                             "classification": [r[2] for r in rows]}, index=index)

    def latest_day(self, end=None):
        """The newest stored day (at or before ``end`` when given), or None."""
        rows = self._rows(self._select(func.max(sentiment.c.day), end=end))
        value = rows[0][0] if rows else None
        return None if value is None else to_utc(value)


def ingest_sentiment(result: SentimentResult, store: SentimentStore, revise: bool = False) -> SentimentReport:
    """Validate and store what a source delivered."""
    report = SentimentReport(store.index, result.source, notes=list(result.notes))
    clean = validate_sentiment(result, report)
    store.upsert(clean, result.source, report, revise=revise)
    return report


def catch_up_limit(store: SentimentStore, now: pd.Timestamp) -> int:
    """Days to ask the API for: since the newest stored day (two spare), or every day on an empty store."""
    latest = store.latest_day()
    if latest is None:
        return 0
    return max(2, int((now.floor("1D") - latest) / DAY) + 2)


def stored_series(engine) -> pd.Series:
    """Every stored Fear & Greed value by day, for features that use it; none stored is a clear error."""
    values = SentimentStore(engine).load()
    if values.empty:
        raise DataNotFound("no Fear & Greed Index values stored: run ingest --source fear-greed "
                           "(--data-dir ../shared/data for the shared file)")
    return values
