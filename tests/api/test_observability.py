"""Request ids, JSON request logs and Prometheus metrics (single process and multiprocess)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from crypto_predictor.api.observability import REQUEST_LOGGER, JsonFormatter, JsonLinesHandler

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/api/v1/symbols", headers={"X-Request-Id": "app-42.7"}).headers["X-Request-Id"] == "app-42.7"
    generated = client.get("/api/v1/symbols").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # an id unfit for logs and headers is replaced, not echoed
    unsafe = client.get("/api/v1/symbols", headers={"X-Request-Id": "a b\u00e9" + "x" * 300}).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe)
    assert client.get("/no/such/path").headers["X-Request-Id"]  # errors carry one too


def test_one_json_log_line_per_request(make_app, log_lines):
    client = make_app().test_client()
    client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"}, headers={"X-Request-Id": "r-1"})
    client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"}, headers={"X-Request-Id": "r-2"})
    client.post("/api/v1/predict", json={"symbol": "NOPE"}, headers={"X-Request-Id": "r-3"})
    lines = {line["request_id"]: line for line in log_lines()}
    assert set(lines) == {"r-1", "r-2", "r-3"}
    first = lines["r-1"]
    assert {"time", "level", "path", "status", "duration_ms", "symbol", "version", "cache_hit",
            "request_id"} <= set(first)
    assert (first["path"], first["status"], first["symbol"], first["version"], first["cache_hit"]) == (
        "/api/v1/predict", 200, "bitcoin", "v1", False)  # v1: production
    assert first["duration_ms"] > 0
    assert lines["r-2"]["cache_hit"] is True
    assert lines["r-3"]["status"] == 404 and lines["r-3"]["symbol"] == "NOPE"



@pytest.fixture()
def package_stream():
    """The package's own JSON handler writing to a StringIO (the direct path of request lines)."""
    handler = next(h for h in logging.getLogger("crypto_predictor").handlers if isinstance(h, JsonLinesHandler))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_request_lines_written_directly_match_logging_records(make_app, package_stream):
    """The handler alone sees request lines, so they skip the LogRecord: same JSON as a record gives."""
    client = make_app().test_client()
    client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"}, headers={"X-Request-Id": "d-1"})
    line = json.loads(package_stream.getvalue().splitlines()[-1])
    assert (line["logger"], line["level"], line["message"], line["request_id"], line["status"]) == (
        REQUEST_LOGGER, "info", "request", "d-1", 200)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    record = logging.makeLogRecord({"name": REQUEST_LOGGER, "levelname": "INFO", "msg": "request",
                                    "fields": {k: v for k, v in line.items()
                                               if k not in ("time", "level", "logger", "message")}})
    via_record = json.loads(JsonFormatter().format(record))
    assert {k: v for k, v in via_record.items() if k != "time"} == {k: v for k, v in line.items() if k != "time"}


def test_a_filter_on_the_request_logger_still_applies(make_app, package_stream):
    logger = logging.getLogger(REQUEST_LOGGER)
    dropped = logging.Filter("nothing.matches")  # passes no record
    logger.addFilter(dropped)
    try:
        make_app().test_client().get("/api/v1/symbols", headers={"X-Request-Id": "f-1"})
    finally:
        logger.removeFilter(dropped)
    assert "f-1" not in package_stream.getvalue()
    make_app().test_client().get("/api/v1/symbols", headers={"X-Request-Id": "f-2"})
    assert '"f-2"' in package_stream.getvalue()

def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_latency_cache_and_versions(make_app):
    client = make_app().test_client()
    hits = _sample("cp_prediction_cache_lookups_total", endpoint="predict", result="hit")
    served = _sample("cp_predictions_served_total", version="v1", timeframe="24h", cached="true")
    latency = _sample("cp_http_request_duration_seconds_count", method="POST", route="/api/v1/predict",
                      status="200")
    for _ in range(3):
        assert client.post("/api/v1/predict", json={"symbol": "ETH"}).status_code == 200
    assert _sample("cp_prediction_cache_lookups_total", endpoint="predict", result="hit") == hits + 2
    assert _sample("cp_predictions_served_total", version="v1", timeframe="24h", cached="true") == served + 2
    assert _sample("cp_http_request_duration_seconds_count", method="POST", route="/api/v1/predict",
                   status="200") == latency + 3
    page = client.get("/metrics")
    assert page.status_code == 200 and page.mimetype == "text/plain"
    text = page.get_data(as_text=True)
    assert 'cp_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/v1/predict"' in text
    assert "cp_predictions_served_total" in text


def test_unmatched_paths_do_not_create_metric_series(client):
    for i in range(5):
        client.get(f"/random/{i}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "/random/" not in text and 'route="<unmatched>"' in text


WORKER = """
import sys
from crypto_predictor.api import create_app
from crypto_predictor.config import TestConfig
app = create_app(TestConfig(DATABASE_URL="sqlite://", MODELS_DIR=sys.argv[1]))
client = app.test_client()
for _ in range(int(sys.argv[2])):
    assert client.get("/api/v1/symbols").status_code == 200
if sys.argv[3] == "scrape":
    print(client.get("/metrics").get_data(as_text=True))
"""


def test_multiprocess_metrics_sum_over_worker_processes(tmp_path):
    """Two 'workers' (processes) share PROMETHEUS_MULTIPROC_DIR; a scrape from either sees both."""
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), PYTHONPATH=str(REPO))

    def worker(n, scrape):
        return subprocess.run([sys.executable, "-c", WORKER, str(tmp_path), str(n), scrape], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=True).stdout

    worker(2, "no")
    text = worker(3, "scrape")
    line = next(ln for ln in text.splitlines() if ln.startswith("cp_http_request_duration_seconds_count")
                and 'route="/api/v1/symbols"' in ln)
    assert float(line.rsplit(" ", 1)[1]) == 5.0
    assert len(list(metrics_dir.glob("*.db"))) >= 2  # one file set per process
