"""Every table of the store, declared on one ``metadata``, and ``init_db`` that creates them.

- ``candles``: hourly (and other interval) candles, unique on (asset, interval, open_time);
- ``prediction_log``: every served prediction, later given its realised price;
- ``job_locks``: one row per running cron job;
- ``sentiment``: daily index values (the Fear & Greed Index), unique on (index_name, day).
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, Index, Integer, MetaData,
                        PrimaryKeyConstraint, String, Table)

metadata = MetaData()

candles = Table(
    "candles",
    metadata,
    Column("asset", String(32), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("open_time", DateTime(timezone=True), nullable=False),
    Column("open", Float(53), nullable=False),
    Column("high", Float(53), nullable=False),
    Column("low", Float(53), nullable=False),
    Column("close", Float(53), nullable=False),
    Column("volume", Float(53)),
    Column("quote_volume", Float(53)),
    Column("trades", Float(53)),
    Column("source", String(16), nullable=False),
    Column("outlier", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("asset", "interval", "open_time", name="pk_candles"),
)

prediction_log = Table(
    "prediction_log",
    metadata,
    # BIGINT on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("asset", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("client_ab_group", String(16), nullable=False),
    Column("prediction_time", DateTime(timezone=True), nullable=False),
    Column("data_as_of", DateTime(timezone=True), nullable=False),
    Column("target_time", DateTime(timezone=True), nullable=False),
    Column("current_price", Float(53), nullable=False),
    Column("predicted_price", Float(53), nullable=False),
    Column("lower80", Float(53)),
    Column("upper80", Float(53)),
    Column("lower95", Float(53)),
    Column("upper95", Float(53)),
    Column("confidence", Float(53)),
    Column("realised_price", Float(53)),
    Column("realised_at", DateTime(timezone=True)),
    Index("ix_prediction_log_asset_target", "asset", "target_time"),
    Index("ix_prediction_log_version", "model_version", "asset", "timeframe"),
)

job_locks = Table(
    "job_locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

sentiment = Table(
    "sentiment",
    metadata,
    Column("index_name", String(32), nullable=False),
    Column("day", DateTime(timezone=True), nullable=False),  # 00:00 UTC of the day the value is for
    Column("value", Float(53), nullable=False),
    Column("classification", String(32)),
    Column("source", String(16), nullable=False),
    PrimaryKeyConstraint("index_name", "day", name="pk_sentiment"),
)


def init_db(engine) -> list[str]:
    """Create every table that does not exist yet; returns the table names. Idempotent."""
    metadata.create_all(engine, checkfirst=True)
    return sorted(metadata.tables)
