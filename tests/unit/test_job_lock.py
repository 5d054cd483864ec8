"""The job lock on a real SQLite file and a real PostgreSQL server: held, released, expired, raced."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import select

from crypto_predictor.storage.tables import init_db
from crypto_predictor.storage.engine import make_engine
from crypto_predictor.storage.lock import JobLock, JobLocked, job_locks

TTL = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'locks.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture()
def engine(db_url):
    eng = make_engine(db_url)
    assert "job_locks" in init_db(eng)  # init / init_db creates the table
    yield eng
    eng.dispose()


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(job_locks)).mappings().all()


def test_a_held_lock_refuses_a_second_owner_until_released(engine):
    first = JobLock(engine, "refresh", TTL, owner="host-a:1:x")
    second = JobLock(engine, "refresh", TTL, owner="host-b:2:y")
    assert first.try_acquire()
    assert not second.try_acquire()
    with pytest.raises(JobLocked) as err:
        second.acquire()
    assert "job 'refresh' is already running: lock held by host-a:1:x since " in err.value.message
    assert err.value.details["holder"] == "host-a:1:x"
    assert [r["owner"] for r in rows(engine)] == ["host-a:1:x"]
    assert not second.release()  # not ours: the holder's row stays
    assert [r["owner"] for r in rows(engine)] == ["host-a:1:x"]
    assert first.release()
    assert rows(engine) == []
    assert second.try_acquire()
    assert [r["owner"] for r in rows(engine)] == ["host-b:2:y"]


def test_different_jobs_do_not_block_each_other(engine):
    with JobLock(engine, "refresh", TTL), JobLock(engine, "verify", TTL):
        assert sorted(r["name"] for r in rows(engine)) == ["refresh", "verify"]
    assert rows(engine) == []  # both released on leaving the block


def test_the_context_manager_releases_on_error(engine):
    with pytest.raises(RuntimeError):
        with JobLock(engine, "retrain", TTL):
            raise RuntimeError("job failed")
    assert JobLock(engine, "retrain", TTL).try_acquire()


def test_an_expired_lock_is_taken_over_and_the_old_owner_cannot_free_it(engine):
    clock = Clock()
    crashed = JobLock(engine, "refresh", TTL, owner="crashed", clock=clock)
    assert crashed.try_acquire()
    later = JobLock(engine, "refresh", TTL, owner="later", clock=clock)
    clock.now += TTL - 1
    assert not later.try_acquire()  # not expired yet
    clock.now += 2
    assert later.try_acquire()  # expired: taken over
    (row,) = rows(engine)
    assert row["owner"] == "later"
    assert not crashed.release()  # the overdue run must not release the new holder's lock
    assert [r["owner"] for r in rows(engine)] == ["later"]
    assert not JobLock(engine, "refresh", TTL, owner="third", clock=clock).try_acquire()


def _race(url, name, barrier, results, hold_seconds):
    """One contender in its own process: wait for the others, try once, hold if won."""
    import time

    from crypto_predictor.storage.engine import make_engine as _make
    from crypto_predictor.storage.lock import JobLock as _Lock

    engine = _make(url)
    lock = _Lock(engine, name, 60)
    barrier.wait(timeout=60)
    won = lock.try_acquire()
    results.put((lock.owner, won))
    if won:
        time.sleep(hold_seconds)  # keep holding while the losers look
        lock.release()
    engine.dispose()


def test_processes_racing_for_the_lock_exactly_one_wins(engine, db_url):
    ctx = mp.get_context("spawn")  # fresh interpreters: no engine or connection shared by fork
    contenders = 4
    barrier, results = ctx.Barrier(contenders), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(db_url, "race", barrier, results, 1.5)) for _ in range(contenders)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    winners = [owner for owner, won in outcomes if won]
    assert len(winners) == 1, outcomes
    assert len({owner for owner, _ in outcomes}) == contenders  # every contender had its own identity
    assert rows(engine) == []  # the winner released it
