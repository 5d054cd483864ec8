"""A named lock in the database, so a cron job (or a worker's live refresh) never runs twice at once.

One row per held lock in ``job_locks``. Acquiring is an INSERT: the primary key lets
exactly one concurrent writer succeed on SQLite and PostgreSQL alike. A row whose
``expires_at`` has passed belongs to a run that crashed; it is taken over with a
conditional UPDATE (``WHERE expires_at < now``), which again only one writer can win.
Release deletes the row only if we still own it, so a run that overstayed its TTL
cannot free a lock someone else has since taken over.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import time
import uuid

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.storage.tables import job_locks


class JobLocked(CryptoPredictorError):
    """Another run holds the job's lock."""

    http_status = 409
    code = "job_locked"


def _utc(value) -> _dt.datetime:
    # SQLite hands datetimes back naive; they were written as UTC.
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)


def _fmt(value) -> str:
    return _utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_owner() -> str:
    """host:pid:random, so two runs on one host (or a reused pid) never look alike."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobLock:
    """``with JobLock(engine, "refresh", ttl_seconds=3600): ...``; raises JobLocked when held."""

    def __init__(self, engine, name: str, ttl_seconds: float, owner: str | None = None, clock=time.time):
        if ttl_seconds <= 0:
            raise ValueError(f"lock TTL must be positive, got {ttl_seconds}")
        self.engine = engine
        self.name = name
        self.ttl = float(ttl_seconds)
        self.owner = owner or default_owner()
        self._clock = clock
        self.held = False

    def _now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self._clock(), _dt.timezone.utc)

    def holder(self) -> dict | None:
        """The current row for this lock (owner, acquired_at, expires_at), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(job_locks).where(job_locks.c.name == self.name)).mappings().first()
        return None if row is None else {"owner": row["owner"], "acquired_at": _utc(row["acquired_at"]),
                                         "expires_at": _utc(row["expires_at"])}

    def try_acquire(self) -> bool:
        now = self._now()
        values = {"owner": self.owner, "acquired_at": now, "expires_at": now + _dt.timedelta(seconds=self.ttl)}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(job_locks).values(name=self.name, **values))
            self.held = True
            return True
        except IntegrityError:
            pass  # held (or left behind by a crash): a separate transaction, as PostgreSQL aborted this one
        with self.engine.begin() as conn:
            taken = conn.execute(update(job_locks).where(job_locks.c.name == self.name,
                                                         job_locks.c.expires_at < now).values(**values)).rowcount
        self.held = taken == 1
        return self.held

    def acquire(self) -> "JobLock":
        if not self.try_acquire():
            held = self.holder()
            if held is None:  # released between our INSERT and the look-up: one more try
                if self.try_acquire():
                    return self
                held = self.holder() or {}
            raise JobLocked(
                f"job {self.name!r} is already running: lock held by {held.get('owner', '?')} since "
                f"{_fmt(held['acquired_at']) if held else '?'} (expires {_fmt(held['expires_at']) if held else '?'})",
                job=self.name, holder=held.get("owner"))
        return self

    def release(self) -> bool:
        """Delete the lock row if we still own it; True if it was ours."""
        with self.engine.begin() as conn:
            gone = conn.execute(delete(job_locks).where(job_locks.c.name == self.name,
                                                        job_locks.c.owner == self.owner)).rowcount
        self.held = False
        return gone == 1

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        if self.held:
            self.release()
        return False
