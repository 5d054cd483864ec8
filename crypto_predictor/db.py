"""Engine factory and the metadata every table is declared on.

SQLite (WAL) is the default; PostgreSQL works through DATABASE_URL. Nothing
here or in the tables is SQLite-only.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

metadata = MetaData()
DEFAULT_INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str):
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, future=True)
    if parsed.database in (None, "", ":memory:"):
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        parent = Path(parsed.database).expanduser().resolve().parent
        # Create only our own default folder: a mistyped path should fail, not grow a fresh empty database.
        if parent == DEFAULT_INSTANCE_DIR:
            parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def init_db(engine) -> list[str]:
    """Create every table that does not exist yet; returns the table names. Idempotent."""
    import crypto_predictor.market.store, crypto_predictor.prediction_log  # noqa: F401,E401  (declare their tables)
    import crypto_predictor.jobs.lock  # noqa: F401  (job_locks)

    metadata.create_all(engine, checkfirst=True)
    return sorted(metadata.tables)
