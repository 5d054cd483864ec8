"""Every table of the store, declared on one ``metadata``, and ``init_db`` that creates them.

- ``candles``: hourly (and other interval) candles, unique on (asset, interval, open_time);
- ``prediction_log``: every served prediction, later given its realised price;
- ``job_locks``: one row per running cron job;
- ``sentiment``: daily index values (the Fear & Greed Index), unique on (index_name, day);
- ``model_*`` (MODEL_STORE_URL's database, ``registry.sql_store``): bundle files as blobs keyed by
  their sha256, versions with their manifests, the files of each version, aliases, their history
  and one state row whose revision every alias change bumps (what workers poll).
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, Index, Integer, LargeBinary, MetaData,
                        PrimaryKeyConstraint, String, Table, Text)

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

job_runs = Table(
    "job_runs",  # one row per finished run of a cron job: what the dashboard shows as its last outcome
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Index("ix_job_runs_name", "name", "id"),
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

model_blobs = Table(
    "model_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),  # allocation: the insert that wins
    Column("version", String(16), nullable=False, unique=True),
    Column("state", String(16), nullable=False),  # "allocated" while training, "ready" once pushed
    Column("allocated_at", DateTime(timezone=True), nullable=False),
    Column("pushed_at", DateTime(timezone=True)),
    Column("manifest", Text),  # the bundle's manifest.json, byte for byte
    Column("manifest_sha256", String(64)),
)

model_files = Table(
    "model_files",
    metadata,
    Column("version", String(16), nullable=False),
    Column("path", String(512), nullable=False),
    Column("sha256", String(64), nullable=False),
    PrimaryKeyConstraint("version", "path", name="pk_model_files"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("alias", String(32), primary_key=True),
    Column("version", String(16), nullable=False),
)

model_alias_history = Table(
    "model_alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", String(40), nullable=False),
    Column("alias", String(32), nullable=False),
    Column("from_version", String(16)),
    Column("to_version", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("by_user", String(64), nullable=False, default=""),
)

model_store_state = Table(
    "model_store_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),  # bumped first in every alias change: it serialises them
)

MODEL_STORE_TABLES = (model_blobs, model_versions, model_files, model_aliases, model_alias_history,
                      model_store_state)


def init_db(engine) -> list[str]:
    """Create every table that does not exist yet; returns the table names. Idempotent."""
    metadata.create_all(engine, checkfirst=True)
    return sorted(metadata.tables)
