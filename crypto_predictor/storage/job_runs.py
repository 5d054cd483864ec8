"""A record of every cron job run (refresh, verify, retrain): when, whether it succeeded, one summary line.

``record_run`` wraps a job: the row is written when the job ends, failed when it raised or set
``run.ok = False``. Writing the record never fails the job (a store that refuses it is logged).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, insert, select

from crypto_predictor.storage.tables import job_runs
from crypto_predictor.timeutil import iso

log = logging.getLogger(__name__)

SUMMARY_CHARS = 2000


@dataclass
class Run:
    name: str
    started_at: pd.Timestamp
    ok: bool = True
    summary: str = ""


@contextmanager
def record_run(engine, name: str):
    run = Run(name, pd.Timestamp.now(tz="UTC"))
    try:
        yield run
    except BaseException as exc:
        run.ok = False
        run.summary = run.summary or getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        raise
    finally:
        _write(engine, run)


def _write(engine, run: Run) -> None:
    try:
        job_runs.create(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(insert(job_runs).values(name=run.name, started_at=run.started_at.to_pydatetime(),
                                                 finished_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
                                                 ok=bool(run.ok), summary=str(run.summary)[:SUMMARY_CHARS]))
    except Exception as exc:  # the job's own outcome matters more than its record
        log.warning("could not record the %s run: %s", run.name, exc)


def last_runs(engine, names=("refresh", "verify", "retrain")) -> dict:
    """name -> the newest run (started_at, finished_at, seconds, ok, summary), or None when never run."""
    out = dict.fromkeys(names)
    newest = (select(job_runs.c.name, func.max(job_runs.c.id).label("id"))
              .where(job_runs.c.name.in_(list(names))).group_by(job_runs.c.name).subquery())
    query = select(job_runs).join(newest, job_runs.c.id == newest.c.id)
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, job_runs.name):
            return out
        for row in conn.execute(query).mappings():
            started, finished = pd.Timestamp(row["started_at"]), pd.Timestamp(row["finished_at"])
            out[row["name"]] = {"started_at": iso(started), "finished_at": iso(finished), "ok": bool(row["ok"]),
                                "seconds": round((finished - started).total_seconds(), 1), "summary": row["summary"]}
    return out
