"""The prediction log: every served prediction, later compared with the realised price.

Writes go through a bounded in-process queue drained by one background thread, so logging
never blocks or fails a request: when the queue is full the row is dropped and counted. Rows
a database outage refuses are kept and retried with exponential backoff (``RETRY_SECONDS`` up
to ``MAX_RETRY_SECONDS``); only when more than ``maxsize`` rows wait are the oldest dropped, and
counted. ``stats()["ok"]`` is false while rows wait for the database or after a drop. The
request thread pays one ``put_nowait``; the writer lingers ``linger`` seconds after the first
row of a batch so the rows that arrive meanwhile share one transaction (a transaction per row
cost more than the prediction itself, and that work competes with requests for the GIL).
A ``flush`` ends the linger at once.
``verify`` fills ``realised_price`` once the stored candles reach a row's target time;
``live_metrics`` turns realised rows into live accuracy. The table is declared in
``storage.tables``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

import pandas as pd
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from crypto_predictor.storage.tables import prediction_log
from crypto_predictor.timeutil import utc

log = logging.getLogger(__name__)

COLUMNS = [c.name for c in prediction_log.columns if c.name != "id"]
HOUR = pd.Timedelta(hours=1)
_STOP = object()
RETRY_SECONDS = 0.5  # first wait after a failed write; doubles up to MAX_RETRY_SECONDS
MAX_RETRY_SECONDS = 30.0


def ensure_table(engine) -> None:
    prediction_log.create(engine, checkfirst=True)


class PredictionLogWriter:
    """Bounded queue + one daemon thread writing batches; ``record`` never blocks or raises.

    ``linger``: seconds the writer waits after a batch's first row for more (0: write at once).
    """

    def __init__(self, engine, maxsize: int = 10_000, batch_size: int = 500, linger: float = 0.2):
        self.engine = engine
        self.maxsize = int(maxsize)
        self.batch_size = int(batch_size)
        self.linger = float(linger)
        self.written = self.dropped = self.failed = 0  # failed: write attempts the database refused
        self._waiting: list[dict] = []  # rows a failed write kept for the next attempt
        self._backoff = 0.0
        self._lock = threading.Lock()
        self._pid = None
        self._queue = None
        self._thread = None
        self._table_ready = False
        self._wake = threading.Event()

    def _ensure_thread(self) -> None:
        # Started on first use, and again in a forked child (threads do not survive fork).
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid != os.getpid() or self._queue is None:
                self._queue = queue.Queue(self.maxsize)
                self._pid = os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                self._thread.start()

    def record(self, row: dict) -> bool:
        """Queue one row (keys: COLUMNS without the realised ones); False when it was dropped."""
        try:
            self._ensure_thread()
            self._queue.put_nowait({k: row.get(k) for k in COLUMNS})
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False
        except Exception:  # logging must never fail a request
            log.exception("prediction log: could not queue a row")
            with self._lock:
                self.dropped += 1
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued before this call is written (or failed); True if done in time."""
        if self._queue is None or self._pid != os.getpid():
            return True
        self._ensure_thread()
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        self._wake.set()
        return done.wait(timeout)

    def stats(self) -> dict:
        pending = self._queue.qsize() if self._queue is not None and self._pid == os.getpid() else 0
        waiting = len(self._waiting)
        return {"ok": self.dropped == 0 and waiting == 0, "queued": pending, "waiting_for_database": waiting,
                "written": self.written, "dropped": self.dropped, "failed_writes": self.failed,
                "capacity": self.maxsize}

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                return
            self._wake.set()
            self._thread.join(timeout)

    def _next(self, q):
        """The next queued item; with rows waiting for the database, None once the backoff is over."""
        if not self._waiting:
            return q.get()
        try:
            return q.get(timeout=self._backoff)
        except queue.Empty:
            return None

    def _run(self) -> None:
        q = self._queue
        while True:
            rows, markers, stop = [], [], False
            item = self._next(q)
            if item is None:  # only the waiting rows are due
                self._write([])
                continue
            if self.linger > 0 and isinstance(item, dict):
                # Wait on an event, not on the queue: puts meanwhile wake nobody; a flush does.
                self._wake.wait(self.linger)
                self._wake.clear()
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    rows.append(item)
                if len(rows) >= self.batch_size:
                    break
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
            if rows or (stop and self._waiting):
                self._write(rows)
            for marker in markers:
                marker.set()
            if stop:
                with self._lock:  # the last attempt failed too: these rows are lost, and counted
                    self.dropped += len(self._waiting)
                self._waiting = []
                return

    def _write(self, rows: list[dict]) -> None:
        """Write the waiting rows and ``rows`` in one transaction; on failure keep them for a retry."""
        good = []
        for row in rows:
            try:
                for key in ("prediction_time", "data_as_of", "target_time"):
                    row[key] = utc(row[key])
                good.append(row)
            except Exception:  # a row no database would take: dropped, counted
                with self._lock:
                    self.dropped += 1
        batch = self._waiting + good
        if not batch:
            return
        if len(batch) > self.maxsize:  # the outage outlasted what we keep: drop the oldest
            with self._lock:
                self.dropped += len(batch) - self.maxsize
            batch = batch[-self.maxsize:]
        try:
            if not self._table_ready:
                ensure_table(self.engine)
                self._table_ready = True
            with self.engine.begin() as conn:
                conn.execute(insert(prediction_log), batch)
        except (OperationalError, InterfaceError, PoolTimeout) as exc:  # an outage: keep the rows, retry later
            self._waiting = batch
            self._backoff = min(max(RETRY_SECONDS, 2 * self._backoff), MAX_RETRY_SECONDS)
            with self._lock:
                self.failed += 1
            log.warning("prediction log: %d rows wait for the database (retry in %.1f s): %s",
                        len(batch), self._backoff, type(exc).__name__)
            return
        except Exception as exc:  # the database answered and refused a row: no retry would help
            log.warning("prediction log: a batch was refused (%s); writing its rows one by one", type(exc).__name__)
            self._waiting, self._backoff = [], 0.0
            self._write_each(batch)
            return
        self._waiting, self._backoff = [], 0.0
        with self._lock:
            self.written += len(batch)

    def _write_each(self, batch: list[dict]) -> None:
        for row in batch:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(prediction_log), [row])
                written, dropped = 1, 0
            except Exception:
                written, dropped = 0, 1
            with self._lock:
                self.written += written
                self.dropped += dropped


# ---------------------------------------------------------------- verification

def verify(store, engine=None, limit: int = 5000) -> int:
    """Fill realised prices of rows whose target time the stored candles have reached.

    The realised price is the close of the hourly candle that closes at the target time; when
    that candle is missing (exchange outage) the last earlier close stands in, as the feature
    grid does. Returns the number of rows filled (at most ``limit`` per asset per call).
    """
    engine = engine or store.engine
    t = prediction_log.c
    with engine.connect() as conn:
        assets = [r[0] for r in conn.execute(select(t.asset).where(t.realised_price.is_(None)).distinct())]
    filled = 0
    for asset in assets:
        latest = store.latest_time(asset, "1h")
        if latest is None:
            continue
        with engine.connect() as conn:
            rows = conn.execute(select(t.id, t.target_time).where(
                t.asset == asset, t.realised_price.is_(None), t.target_time <= utc(latest + HOUR))
                .order_by(t.target_time).limit(limit)).all()
        if not rows:
            continue
        targets = pd.DatetimeIndex([utc(r.target_time) for r in rows])
        # Two days of slack before the first target cover an outage right before it.
        candles = store.load(asset, "1h", targets.min() - HOUR - pd.Timedelta(days=2), targets.max() - HOUR)
        if candles.empty:
            continue
        pos = candles.index.searchsorted(targets - HOUR, side="right") - 1
        updates = [{"b_id": r.id, "v_price": float(candles["close"].iloc[p]),
                    "v_at": utc(candles.index[p] + HOUR)} for r, p in zip(rows, pos) if p >= 0]
        if updates:
            stmt = (update(prediction_log).where(t.id == bindparam("b_id"))
                    .values(realised_price=bindparam("v_price"), realised_at=bindparam("v_at")))
            with engine.begin() as conn:
                conn.execute(stmt, updates)
            filled += len(updates)
    return filled
