"""The prediction log: every served prediction, later compared with the realised price.

Writes go through a bounded in-process queue drained by one background thread, so logging
never blocks or fails a request: when the queue is full the row is dropped and counted. The
request thread pays one ``put_nowait``; the writer lingers ``linger`` seconds after the first
row of a batch so the rows that arrive meanwhile share one transaction (a transaction per row
cost more than the prediction itself, and that work competes with requests for the GIL).
A ``flush`` ends the linger at once.
``verify`` fills ``realised_price`` once the stored candles reach a row's target time, and
the query functions turn realised rows into live accuracy.

Several workers (and a cached prediction recomputed after expiry) can log the same
prediction more than once; the read side counts each (version, asset, timeframe, data_as_of)
once, using its first row. SQL stays portable (SQLite and PostgreSQL): no dialect-specific
statements, aggregates built from CASE expressions.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import queue
import threading

import pandas as pd
from sqlalchemy import (BigInteger, Column, DateTime, Float, Index, Integer, String, Table, and_, bindparam, case,
                        func, insert, select, update)

from crypto_predictor.db import metadata
from crypto_predictor.market.frames import to_utc

log = logging.getLogger(__name__)

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

COLUMNS = [c.name for c in prediction_log.columns if c.name != "id"]
HOUR = pd.Timedelta(hours=1)
_STOP = object()


def utc(value) -> _dt.datetime | None:
    """A UTC-aware datetime (SQLite hands back naive values, which are UTC by construction)."""
    if value is None:
        return None
    # Fast paths (requests and the log writer): the service's own ISO strings and aware timestamps.
    if type(value) is str and value.endswith("Z"):
        try:
            return _dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            pass  # anything else pandas may still read
    elif type(value) is pd.Timestamp and value.tzinfo is not None and value.value >= 0:
        return value.tz_convert("UTC").to_pydatetime(warn=False)  # drops nanoseconds: a floor here
    return to_utc(value).floor("us").to_pydatetime()  # datetime has no nanoseconds


def iso(value) -> str | None:
    value = utc(value)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


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
        self.written = self.dropped = self.failed = 0
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
        return {"queued": pending, "written": self.written, "dropped": self.dropped, "failed": self.failed,
                "capacity": self.maxsize}

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                return
            self._wake.set()
            self._thread.join(timeout)

    def _run(self) -> None:
        q = self._queue
        while True:
            rows, markers, stop = [], [], False
            item = q.get()
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
            if rows:
                self._write(rows)
            for marker in markers:
                marker.set()
            if stop:
                return

    def _write(self, rows: list[dict]) -> None:
        try:
            if not self._table_ready:
                ensure_table(self.engine)
                self._table_ready = True
            for row in rows:
                for key in ("prediction_time", "data_as_of", "target_time"):
                    row[key] = utc(row[key])
            with self.engine.begin() as conn:
                conn.execute(insert(prediction_log), rows)
            with self._lock:
                self.written += len(rows)
        except Exception as exc:  # a database outage loses these rows, never the worker
            with self._lock:
                self.failed += len(rows)
            log.warning("prediction log: %d rows not written: %s: %s", len(rows), type(exc).__name__, exc)


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


# ---------------------------------------------------------------- reading

def _firsts(*conditions):
    """One row id per distinct prediction (version, asset, timeframe, data_as_of): the first logged."""
    t = prediction_log.c
    return (select(func.min(t.id).label("id")).where(*conditions)
            .group_by(t.model_version, t.asset, t.timeframe, t.data_as_of).subquery())


def _filters(version=None, asset=None, timeframe=None) -> list:
    t = prediction_log.c
    out = []
    if version is not None:
        out.append(t.model_version == version)
    if asset is not None:
        out.append(t.asset == asset)
    if timeframe is not None:
        out.append(t.timeframe == timeframe)
    return out


def _inside(low, high, price):
    return case((low.is_(None), None), (and_(price >= low, price <= high), 1.0), else_=0.0)


def live_accuracy(engine, version=None, asset=None, timeframe=None, by=("model_version", "asset", "timeframe"),
                  since=None, until=None) -> list[dict]:
    """Accuracy of realised predictions, one row per group (``by``: a subset of the three keys).

    ``since`` / ``until`` keep predictions whose target time lies in (since, until] (a rolling window).

    n, directional_accuracy (sign of predicted vs realised move; a predicted no-change counts
    0.5, a realised no-change is left out), mae_pct and naive_mae_pct (|error| as % of the
    price at prediction time, model vs no-change), mase, coverage_80/95, mean_confidence.
    """
    t = prediction_log.c
    window = ([] if since is None else [t.target_time > utc(since)]) + (
        [] if until is None else [t.target_time <= utc(until)])
    firsts = _firsts(t.realised_price.is_not(None), *_filters(version, asset, timeframe), *window)
    pred_move, real_move = t.predicted_price - t.current_price, t.realised_price - t.current_price
    hit = case((real_move == 0, None), (pred_move == 0, 0.5), (pred_move * real_move > 0, 1.0), else_=0.0)
    keys = [getattr(t, k) for k in by]
    query = (select(*keys, func.count().label("n"), func.avg(hit).label("directional_accuracy"),
                    func.avg(func.abs(t.realised_price - t.predicted_price) / t.current_price * 100).label("mae_pct"),
                    func.avg(func.abs(real_move) / t.current_price * 100).label("naive_mae_pct"),
                    func.avg(_inside(t.lower80, t.upper80, t.realised_price)).label("coverage_80"),
                    func.avg(_inside(t.lower95, t.upper95, t.realised_price)).label("coverage_95"),
                    func.avg(t.confidence).label("mean_confidence"),
                    func.min(t.target_time).label("first_target"), func.max(t.target_time).label("last_target"))
             .join_from(prediction_log, firsts, t.id == firsts.c.id).group_by(*keys).order_by(*keys))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        for key in ("first_target", "last_target"):
            item[key] = iso(item[key])
        for key, value in item.items():
            if isinstance(value, float):
                item[key] = round(value, 6)
        mae, naive = item["mae_pct"], item["naive_mae_pct"]
        item["mase"] = round(mae / naive, 6) if mae is not None and naive else None
        out.append(item)
    return out


def _outcome(row) -> dict:
    realised, predicted, current = row.realised_price, row.predicted_price, row.current_price
    item = {
        "timeframe": row.timeframe, "model_version": row.model_version, "kind": row.kind,
        "prediction_time": iso(row.prediction_time), "data_as_of": iso(row.data_as_of),
        "target_time": iso(row.target_time), "current_price": current, "predicted_price": predicted,
        "interval": {"80": None if row.lower80 is None else [row.lower80, row.upper80],
                     "95": None if row.lower95 is None else [row.lower95, row.upper95]},
        "confidence": row.confidence, "realised_price": realised, "realised_at": iso(row.realised_at),
        "status": "pending" if realised is None else "realised",
        "error": None, "error_percentage": None, "direction_correct": None, "within_80": None, "within_95": None,
    }
    if realised is not None:
        item["error"] = realised - predicted
        item["error_percentage"] = round((realised - predicted) / current * 100, 6)
        moves = (predicted - current) * (realised - current)
        item["direction_correct"] = None if realised == current or predicted == current else bool(moves > 0)
        for key, low, high in (("within_80", row.lower80, row.upper80), ("within_95", row.lower95, row.upper95)):
            item[key] = None if low is None else bool(low <= realised <= high)
    return item


def history(engine, asset: str, limit: int = 50, timeframe=None) -> list[dict]:
    """Distinct logged predictions for an asset, newest logged first, with realised outcome and error."""
    t = prediction_log.c
    firsts = _firsts(*_filters(asset=asset, timeframe=timeframe))
    query = (select(prediction_log).join_from(prediction_log, firsts, t.id == firsts.c.id)
             .order_by(t.prediction_time.desc(), t.id.desc()).limit(int(limit)))
    with engine.connect() as conn:
        return [_outcome(row) for row in conn.execute(query).all()]


def count(engine, **filters) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(prediction_log)
                                .where(*_filters(**filters))).scalar())
