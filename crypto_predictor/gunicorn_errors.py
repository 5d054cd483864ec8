"""Gunicorn's own error answers in the API's JSON shape.

Requests Gunicorn refuses before the app sees them (request line over ``limit_request_line``:
414, a header over ``limit_request_field_size``: 431, a malformed request: 400) are written by
``gunicorn.util.write_error`` as an HTML page. ``gunicorn.conf.py`` points that function at
``write_json_error``, so a client gets ``{"status": "error", "error": {"code", "message"}}`` like
every other error of the API. Imports nothing of ours (the Gunicorn master loads it).
"""

from __future__ import annotations

import json

from gunicorn import util

CODES = {400: "bad_request", 403: "forbidden", 414: "request_line_too_long", 417: "expectation_failed",
         431: "headers_too_large", 500: "internal_error", 501: "not_implemented"}
MAX_DETAIL = 200  # characters of Gunicorn's detail kept (it may quote what the client sent)


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    detail = str(mesg or "")[:MAX_DETAIL]
    body = json.dumps({"status": "error", "error": {"code": CODES.get(status_int, "error"),
                                                    "message": f"{reason}: {detail}" if detail else reason}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    """Make Gunicorn write its error answers with ``write_json_error``."""
    util.write_error = write_json_error
