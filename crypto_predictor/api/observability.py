"""Request ids, one JSON log line per request, and Prometheus metrics at /metrics.

Views add what they know about a request (symbol, version, cache_hit) with
``note(...)``; the after-request hook writes it with path, status and duration.

Metrics: under Gunicorn set PROMETHEUS_MULTIPROC_DIR (an empty, writable directory,
set before the process starts) so every worker writes its samples there and /metrics,
whichever worker answers it, reports the sum over all workers; gunicorn.conf.py marks
dead workers. Without it the metrics are those of the answering process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from crypto_predictor.api.operations import operation

REQUEST_LOGGER = "crypto_predictor.requests"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUEST_LATENCY = Histogram(
    "cp_http_request_duration_seconds", "HTTP request latency by route and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CACHE_LOOKUPS = Counter("cp_prediction_cache_lookups_total", "Prediction cache lookups by result",
                        ["endpoint", "result"])
PREDICTIONS = Counter("cp_predictions_served_total", "Predictions served by model version, timeframe and cache",
                      ["version", "timeframe", "cached"])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``fields`` passed in ``extra``."""

    _second = (None, "")  # (whole second, its formatted text): one strftime per second, not per line

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.created, record.levelname.lower(), record.name, record.getMessage(),
                         getattr(record, "fields", None), exception)

    def line(self, created: float, level: str, name: str, message: str, fields=None, exception=None) -> str:
        second = int(created)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(created)))
        entry = {"time": f"{self._second[1]}.{int((created - second) * 1000):03d}Z",
                 "level": level, "logger": name, "message": message}
        entry.update(fields or {})
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, default=str)


JsonFormatter.converter = time.gmtime  # timestamps in UTC, like everything else here


class JsonLinesHandler(logging.StreamHandler):
    """Writes JsonFormatter lines; ``write_line`` sends one without building a LogRecord."""

    def __init__(self, stream):
        super().__init__(stream)
        self.setFormatter(JsonFormatter())

    def write_line(self, level: str, name: str, message: str, fields: dict) -> None:
        line = self.formatter.line(time.time(), level, name, message, fields)
        self.acquire()
        try:
            self.stream.write(line + self.terminator)
            self.stream.flush()
        except Exception:  # noqa: BLE001 - as logging does: a broken log stream never fails a request
            self.handleError(logging.makeLogRecord({"name": name, "msg": message}))
        finally:
            self.release()


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for this package's loggers; idempotent (create_app may run often)."""
    root = logging.getLogger("crypto_predictor")
    if not any(isinstance(h, JsonLinesHandler) for h in root.handlers):
        root.addHandler(JsonLinesHandler(sys.stderr))
        root.propagate = False  # Gunicorn or a root handler would print each line twice
    root.setLevel(level.upper() if isinstance(level, str) else level)


_children: dict = {}


def labelled(metric, *labels):
    """``metric.labels(*labels)``, kept: labels() takes a lock and checks its arguments on every call."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def note(**fields) -> None:
    """Attach fields to this request's log line (symbol, version, cache_hit, ...)."""
    ctx = g._get_current_object()
    try:
        ctx.log_fields.update(fields)
    except AttributeError:
        ctx.log_fields = fields


def request_id() -> str:
    return g.get("request_id", "")


def _new_id() -> str:
    return os.urandom(16).hex()  # 32 hex digits, like uuid4().hex without building a UUID


def _before():
    ctx = g._get_current_object()  # one context lookup instead of one per attribute
    ctx.started = time.perf_counter()
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    # Echo a caller's id only when it is safe to put in logs and headers.
    ctx.request_id = incoming if incoming and _REQUEST_ID.match(incoming) else _new_id()


_request_log = logging.getLogger(REQUEST_LOGGER)


def _direct_handler():
    """Our JSON handler when it alone would see a request record (no filters, no other handler),
    else None; a request's line is then written straight to it (half the cost of a LogRecord)."""
    parent = _request_log.parent
    if _request_log.handlers or _request_log.filters or not _request_log.propagate or parent is None:
        return None
    handlers = parent.handlers
    if len(handlers) != 1 or parent.filters or parent.propagate:
        return None
    handler = handlers[0]
    if type(handler) is not JsonLinesHandler or handler.filters or handler.level > logging.INFO:
        return None
    return handler


def _log_request(fields: dict) -> None:
    """``_request_log.info("request", extra={"fields": fields})``; levels, filters and handlers
    apply as usual (the caller checked the level)."""
    handler = _direct_handler()
    if handler is not None:
        handler.write_line("info", REQUEST_LOGGER, "request", fields)
        return
    # without the caller lookup (a stack walk) that nothing here reads
    record = _request_log.makeRecord(REQUEST_LOGGER, logging.INFO, __file__, 0, "request", (), None,
                                     extra={"fields": fields})
    _request_log.handle(record)


def _after(response):
    ctx, req = g._get_current_object(), request._get_current_object()
    started = getattr(ctx, "started", None)
    duration = time.perf_counter() - started if started is not None else 0.0
    rid = response.headers["X-Request-Id"] = getattr(ctx, "request_id", None) or _new_id()
    rule = req.url_rule
    route = rule.rule if rule is not None else "<unmatched>"
    status = response.status_code
    if route != "/metrics":
        labelled(REQUEST_LATENCY, req.method, route, str(status)).observe(duration)
    if _request_log.isEnabledFor(logging.INFO):
        fields = {"request_id": rid, "method": req.method, "path": req.path, "route": route,
                  "status": status, "duration_ms": round(duration * 1000, 2),
                  "symbol": None, "version": None, "cache_hit": None}
        fields.update(getattr(ctx, "log_fields", ()))
        _log_request(fields)
    return response


def metrics_registry():
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


metrics_bp = Blueprint("metrics", __name__)


@metrics_bp.get("/metrics")
@operation(summary="Prometheus metrics (summed over Gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set)",
           description="Open unless METRICS_TOKEN is set; then it needs Authorization: Bearer <METRICS_TOKEN>.",
           tags=("ops",), security=({}, {"metricsToken": []}), media_type="text/plain",
           errors={401: "METRICS_TOKEN is set and the bearer token is missing or wrong"}, common_errors=())
def metrics():
    return Response(generate_latest(metrics_registry()), mimetype=CONTENT_TYPE_LATEST)


def init_observability(app) -> None:
    configure_logging(app.config.get("LOG_LEVEL", "INFO"))
    app.before_request(_before)
    app.after_request(_after)
    app.register_blueprint(metrics_bp)
