"""GET /api/health: readiness as the service sees it (model loaded, store reachable, data age);
GET /api/health/live: liveness, the process answers at all.

Readiness is 200 when every check passes, else 503. The 503 body is the usual error shape plus
the same ``model_version`` and ``checks`` a 200 carries, so a probe and a person both see why.
Liveness touches neither the models nor the store: a worker that cannot serve yet (no model, the
database down, data too old) is still alive, and restarting it would not help. Probes that
restart a process use liveness; probes that route traffic or gate a deploy use readiness.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Blueprint, current_app, jsonify

from crypto_predictor.api.operations import operation
from crypto_predictor.api.schemas import Health, Liveness

bp = Blueprint("health", __name__)
log = logging.getLogger("crypto_predictor.api")
_STARTED = time.monotonic()  # module import: close enough to the worker's start


def _report() -> dict:
    holder = current_app.extensions["prediction_service"]
    try:
        report = dict(holder.get().health())  # health() runs the model refresh check itself
    except Exception as exc:  # health must answer whatever broke, and say what
        log.warning("health check failed: %s", exc.__class__.__name__)
        reason = getattr(exc, "message", None) or exc.__class__.__name__
        report = {"ok": False, "model_version": None,
                  "checks": {"service": {"ok": False, "error": reason}}}
    report.setdefault("checks", {})
    report.setdefault("model_version", None)
    return report


@bp.get("/health")
@operation(summary="Readiness: loaded model version, data freshness and checks", tags=("ops",), response=Health,
           description="200 when a model is loaded and the store answers; 503 otherwise (same body, status "
                       "error, with the error object).", errors={503: "Not ready (the Health body)"},
           common_errors=())
def health():
    report = _report()
    if report.get("ok"):
        return jsonify({"status": "ok", **report}), 200
    failing = sorted(name for name, check in report["checks"].items()
                     if not (isinstance(check, dict) and check.get("ok")))
    report["status"] = "error"
    report["error"] = {"code": "unavailable",
                       "message": f"not ready; failing checks: {', '.join(failing) or 'unknown'}"}
    return jsonify(report), 503


@bp.get("/health/live")
@operation(summary="Liveness: the process answers", tags=("ops",), response=Liveness,
           description="Always 200 while the worker can answer HTTP; it checks no model, store or data (that is "
                       "/api/health, readiness).", common_errors=())
def live():
    return jsonify({"status": "ok", "pid": os.getpid(), "uptime_seconds": round(time.monotonic() - _STARTED, 1)})
