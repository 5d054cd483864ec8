"""Requests Gunicorn itself refuses are answered in the API's JSON error shape (real Gunicorn)."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support.bundles import quick_production
from tests.support.gunicorn import GunicornServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("gunicorn_errors")
    url = f"sqlite:///{root / 'store.db'}"
    models = root / "models"
    quick_production(url, models, data_dir, last_days=30)
    gunicorn = GunicornServer(root, dict(WEB_CONCURRENCY="1", DATABASE_URL=url, MODELS_DIR=str(models),
                                         MARKET_DATA_SOURCE="csv", RATELIMIT_ENABLED="0", LOG_LEVEL="warning"))
    gunicorn.start()
    yield gunicorn
    gunicorn.stop()


def _raw(port: int, request: bytes) -> tuple[str, dict, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, json.loads(body)


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET /api/v1/symbols?" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", "414", "request_line_too_long"),
    (b"GET /api/health HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", "431", "headers_too_large"),
    (b"NOT A REQUEST\r\n\r\n", "400", "bad_request"),
])
def test_gunicorn_refusals_are_json(server, request_bytes, status, code):
    line, headers, body = _raw(server.port, request_bytes)
    assert line.split()[1] == status
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) > 0
    assert body["status"] == "error" and body["error"]["code"] == code and body["error"]["message"]
