"""The SQLAlchemy engine for DATABASE_URL: SQLite (WAL) by default, PostgreSQL through a URL.

Nothing here or in the tables is SQLite-only.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from crypto_predictor.config import Config

DEFAULT_INSTANCE_DIR = Path(__file__).resolve().parents[2] / "instance"
CONNECT_TIMEOUT_S = 5  # a database that does not accept the connection by then is down
POOL_TIMEOUT_S = 10  # the longest wait for a free pooled connection


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str, statement_timeout_s: float | None = None):
    """``statement_timeout_s`` (default DATABASE_STATEMENT_TIMEOUT_SECONDS; 0: none) bounds every
    PostgreSQL statement, so a stuck query ends in an error instead of holding a worker; SQLite
    waits at most 10 s for a lock (busy_timeout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if statement_timeout_s is None:
            statement_timeout_s = Config().DATABASE_STATEMENT_TIMEOUT_SECONDS
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
        if parsed.get_backend_name() == "postgresql" and statement_timeout_s > 0:
            connect_args["options"] = f"-c statement_timeout={int(statement_timeout_s * 1000)}"
        return create_engine(url, pool_pre_ping=True, pool_timeout=POOL_TIMEOUT_S, connect_args=connect_args)
    if _in_memory(parsed):
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


def _in_memory(url) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


class TaskUrl(str):
    """A database URL, whole as a string, with its password masked in ``repr``: fan-out tasks carry
    the URL to their workers, and Dask logs a failed task's arguments (their reprs)."""

    def __repr__(self) -> str:
        try:
            return repr(make_url(str(self)).render_as_string(hide_password=True))
        except ArgumentError:
            return "'<unparsable database URL>'"


def shareable_url(engine) -> TaskUrl | None:
    """The URL another process can open the same database with, or None for an in-memory SQLite."""
    return None if _in_memory(engine.url) else TaskUrl(engine.url.render_as_string(hide_password=False))
