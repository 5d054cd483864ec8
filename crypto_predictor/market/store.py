"""The candle store: one table, idempotent upserts, series as UTC-indexed frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import and_, bindparam, func, select, update

from crypto_predictor.storage.engine import make_engine
from crypto_predictor.storage.tables import candles, init_db
from crypto_predictor.timeutil import to_utc

VALUE_COLUMNS = ["open", "high", "low", "close", "volume", "quote_volume", "trades"]



def _dialect_insert(engine):
    """INSERT ... ON CONFLICT DO NOTHING for the engine's dialect (SQLite or PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise RuntimeError(f"unsupported database dialect {engine.dialect.name!r}")
    return insert(candles).on_conflict_do_nothing(index_elements=["asset", "interval", "open_time"])


def _records(frame: pd.DataFrame) -> list[dict]:
    out = frame.copy()
    out["open_time"] = out["open_time"].dt.to_pydatetime()
    out = out.astype(object).where(out.notna(), None)
    return out.to_dict("records")


class CandleStore:
    def __init__(self, engine_or_url):
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url

    def init_schema(self) -> list[str]:
        return init_db(self.engine)

    def upsert(self, asset: str, interval: str, frame: pd.DataFrame, source: str, revise: bool = False) -> dict:
        """Store validated candles; returns counts of inserted, updated, unchanged and kept-apart rows,
        and ``kept_apart_times``.

        Rows equal to what is stored are not written, so a repeated ingest changes nothing. A row
        that differs from a stored candle (every stored candle is closed) would rewrite history: it
        is kept apart (counted, not written) unless ``revise`` asks for the correction.
        """
        counts = {"inserted": 0, "updated": 0, "unchanged": 0, "kept_apart": 0, "kept_apart_times": []}
        if frame.empty:
            return counts
        frame = frame.copy()
        if "outlier" not in frame:
            frame["outlier"] = False
        existing = self.load(asset, interval, frame["open_time"].min(), frame["open_time"].max())
        merged = frame.merge(existing[VALUE_COLUMNS + ["outlier"]], how="left", left_on="open_time",
                             right_index=True, suffixes=("", "_old"), indicator=True)
        is_new = (merged["_merge"] == "left_only").to_numpy()
        old = merged.loc[~is_new]
        rewrites = np.zeros(len(old), dtype=bool)
        for col in VALUE_COLUMNS:
            a, b = old[col].to_numpy(dtype="float64"), old[f"{col}_old"].to_numpy(dtype="float64")
            rewrites |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
        # Without revise a stored candle is never touched: not its values (those rows are kept apart)
        # nor its outlier flag (computed against the neighbours received, kept-apart ones included).
        reflagged = old["outlier"].to_numpy(dtype=bool) != old["outlier_old"].to_numpy(dtype=bool)
        if not revise:
            counts["kept_apart"] = int(rewrites.sum())
            counts["kept_apart_times"] = old.loc[rewrites, "open_time"].tolist()
            rewrites[:] = reflagged[:] = False
        keep = ["open_time"] + VALUE_COLUMNS + ["outlier"]
        new_rows, changed_rows = merged.loc[is_new, keep], old.loc[rewrites | reflagged, keep]
        with self.engine.begin() as conn:
            if len(new_rows):
                rows = [dict(r, asset=asset, interval=interval, source=source) for r in _records(new_rows)]
                # Concurrent writers may insert some of these rows first (ON CONFLICT skips them): count
                # what this statement inserted. SQLAlchemy drops an INSERT's rowcount unless told to keep it.
                result = conn.execute(_dialect_insert(self.engine), rows,
                                      execution_options={"preserve_rowcount": True})
                counts["inserted"] = result.rowcount if result.rowcount >= 0 else len(rows)
            if len(changed_rows):
                stmt = (
                    update(candles)
                    .where(and_(candles.c.asset == bindparam("b_asset"),
                                candles.c.interval == bindparam("b_interval"),
                                candles.c.open_time == bindparam("b_open_time")))
                    .values({c: bindparam(f"v_{c}") for c in VALUE_COLUMNS + ["outlier", "source"]})
                )
                params = [
                    {"b_asset": asset, "b_interval": interval, "b_open_time": r["open_time"],
                     "v_source": source, **{f"v_{c}": r[c] for c in VALUE_COLUMNS + ["outlier"]}}
                    for r in _records(changed_rows)
                ]
                conn.execute(stmt, params)
                counts["updated"] = len(params)
        counts["unchanged"] = len(frame) - counts["inserted"] - counts["updated"] - counts["kept_apart"]
        return counts

    def load(self, asset: str, interval: str = "1h", start=None, end=None) -> pd.DataFrame:
        """Candles for one asset, oldest first, indexed by UTC open time."""
        c = candles.c
        query = select(c.open_time, *[c[k] for k in VALUE_COLUMNS], c.outlier, c.source).where(
            c.asset == asset, c.interval == interval)
        if start is not None:
            query = query.where(c.open_time >= pd.Timestamp(start).to_pydatetime())
        if end is not None:
            query = query.where(c.open_time <= pd.Timestamp(end).to_pydatetime())
        with self.engine.connect() as conn:
            # plain tuples: pandas probing SQLAlchemy Rows field by field costs 5x the query itself
            rows = [tuple(row) for row in conn.execute(query.order_by(c.open_time))]
        frame = pd.DataFrame(rows, columns=["open_time"] + VALUE_COLUMNS + ["outlier", "source"])
        frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
        for col in VALUE_COLUMNS:
            frame[col] = frame[col].astype("float64")
        frame["outlier"] = frame["outlier"].astype(bool)
        return frame.set_index("open_time")

    def latest_time(self, asset: str, interval: str = "1h"):
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(candles.c.open_time)).where(
                candles.c.asset == asset, candles.c.interval == interval)).scalar()
        return None if value is None else to_utc(value)  # SQLite hands back naive UTC

    def assets(self, interval: str = "1h") -> set[str]:
        """Assets with at least one stored candle of ``interval``."""
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(select(candles.c.asset).where(
                candles.c.interval == interval).distinct())}

    def count(self, asset: str | None = None, interval: str | None = None) -> int:
        query = select(func.count()).select_from(candles)
        if asset is not None:
            query = query.where(candles.c.asset == asset)
        if interval is not None:
            query = query.where(candles.c.interval == interval)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar())
