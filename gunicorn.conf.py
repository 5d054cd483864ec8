"""Gunicorn settings, read from the environment with defaults right for 2 cores.

Sync workers: models that release the GIL often (tree ensembles) collapse under
gthread workers, so parallelism comes from processes, one per core.

Metrics: with PROMETHEUS_MULTIPROC_DIR set (before Gunicorn starts, so every worker
inherits it) each worker writes its samples to files there and /metrics sums them;
the directory is emptied at start-up and a dead worker's live series are dropped.
"""

import os
from pathlib import Path

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
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


def child_exit(server, worker):
    """Drop the live-gauge series of a worker that exited (counters and histograms are kept)."""
    if _multiproc_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
