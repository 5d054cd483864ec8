"""Gunicorn settings, read from the environment with defaults right for 2 cores.

Sync workers: models that release the GIL often (tree ensembles) collapse under
gthread workers, so parallelism comes from processes, one per core.

Metrics: with PROMETHEUS_MULTIPROC_DIR set (before Gunicorn starts, so every worker
inherits it) each worker writes its samples to files there and /metrics sums them;
the directory is emptied at start-up and a dead worker's live series are dropped.
"""

import os
from pathlib import Path

from crypto_predictor import gunicorn_errors

# Requests Gunicorn itself refuses (414, 431, 400) are answered in the API's JSON error shape.
gunicorn_errors.install()

# One thread per library per worker: the workers already use every core, and OpenMP/TensorFlow
# thread pools on top of them halved throughput in bench/bench_serving.py (116-151 -> 252 req/s
# uncached once set). Must be set before any worker imports numpy, xgboost or TensorFlow.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_name, "1")

# Behind nginx (deploy/start.sh) Gunicorn listens on a unix socket: GUNICORN_BIND=unix:PATH.
bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# A sync worker reads each request itself: slow clients must be held by a buffering proxy in
# front (deploy/nginx.conf; bench/bench_slow_clients.py compares the worker classes).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or ("gthread" if threads > 1 else "sync")
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Models must be loaded after fork (a TensorFlow model loaded in the master hangs the workers);
# the app starts its PredictionService lazily in each worker (crypto_predictor/api/runtime.py).
preload_app = False
# The app writes one JSON line per request itself (with request id, symbol, version, cache hit).
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def _multiproc_dir():
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def on_starting(server):
    """Start with an empty metrics directory: files of a previous run would be summed in."""
    directory = _multiproc_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink()


def post_worker_init(worker):
    """Load and warm up the served bundle before this worker accepts its first request.

    A failure is logged, not fatal: the service retries lazily and health reports it.
    """
    holder = getattr(worker.wsgi, "extensions", {}).get("prediction_service")
    if holder is None:
        return
    try:
        holder.get()
    except Exception as exc:  # noqa: BLE001 - keep the worker up; /api/health says what is wrong
        worker.log.warning("model not loaded at worker start: %s", exc)


def child_exit(server, worker):
    """Drop the live-gauge series of a worker that exited (counters and histograms are kept)."""
    if _multiproc_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
