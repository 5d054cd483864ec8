"""Where independent fits run: in this process, in joblib's local processes, or on a Dask cluster.

``open_fanout(scheduler, n_jobs)`` gives one of two executors with the same three calls:

* ``share(value)``: data every task needs, sent once. Locally the value itself; on Dask it is
  scattered to every worker once (``broadcast``: a lost worker does not lose it) and tasks get it by
  reference, never a frame pickled per task.
* ``map(fn, tasks)``: ``fn(*task)`` for each task, results in task order. Locally in this process
  (``local_processes=False``: the global fits, whose pooled data would otherwise be pickled per
  process) or in joblib's loky processes; on Dask one future per task, ``retries`` for a task whose
  worker died, gathered by this client, so whatever is written from the results is written here.
* ``imap_unordered(fn, tasks)``: the same, each result as soon as it is done (progress).
* ``close()``.

Inside Dask tasks fits run single-threaded (``THREAD_CAP_ENV`` for xgboost, threadpoolctl for BLAS):
a worker runs one task per thread it has. The results do not depend on it, so a bundle trained on a
cluster equals one trained locally with the same seed.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
RETRIES = 3  # a task whose worker was lost (or that failed) is run again up to this many times


def _call_single_threaded(fn, *args):
    """``(pid, fn(*args))`` with one thread for xgboost and BLAS: what a Dask task runs."""
    from threadpoolctl import threadpool_limits

    from crypto_predictor.models._booster import THREAD_CAP_ENV

    os.environ[THREAD_CAP_ENV] = "1"
    with threadpool_limits(1):
        return os.getpid(), fn(*args)


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalFanout(_Closing):
    kind = "local"

    def __init__(self, n_jobs: int = 2):
        self.n_jobs = max(1, int(n_jobs))

    def share(self, value):
        return value

    def map(self, fn, tasks, local_processes: bool = True) -> list:
        tasks = list(tasks)
        if not local_processes or self.n_jobs == 1 or len(tasks) <= 1:
            return [fn(*task) for task in tasks]
        from joblib import Parallel, delayed

        return Parallel(n_jobs=min(self.n_jobs, len(tasks)))(delayed(fn)(*task) for task in tasks)

    def imap_unordered(self, fn, tasks):
        """``fn(*task)`` in joblib's processes, each result as soon as it is done."""
        from joblib import Parallel, delayed

        tasks = list(tasks)
        if not tasks:
            return iter(())
        return Parallel(n_jobs=min(self.n_jobs, len(tasks)), return_as="generator_unordered")(
            delayed(fn)(*task) for task in tasks)

    def describe(self) -> str:
        return f"local ({self.n_jobs} process(es))"

    def close(self) -> None:
        pass


class DaskFanout(_Closing):
    kind = "dask"

    def __init__(self, address: str, client=None):
        import dask
        from distributed import Client

        self.address = address
        # Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT, 30 s unless set) bounds the wait
        # for an unreachable scheduler.
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        self.client = client if client is not None else Client(address, timeout=timeout)
        self._own = client is None
        self.ran_on: dict = {}  # worker pid -> tasks it returned (a test checks where they ran)

    def _result(self, done):
        pid, result = done
        self.ran_on[pid] = self.ran_on.get(pid, 0) + 1
        return result

    def share(self, value):
        return self.client.scatter(value, broadcast=True, hash=False)

    def map(self, fn, tasks, local_processes: bool = True) -> list:
        futures = [self.client.submit(_call_single_threaded, fn, *task, pure=False, retries=RETRIES)
                   for task in tasks]
        return [self._result(done) for done in self.client.gather(futures)]

    def imap_unordered(self, fn, tasks):
        from distributed import as_completed

        futures = [self.client.submit(_call_single_threaded, fn, *task, pure=False, retries=RETRIES)
                   for task in tasks]
        for future in as_completed(futures):
            yield self._result(future.result())

    def describe(self) -> str:
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        link = getattr(self.client, "dashboard_link", None)
        return f"dask at {self.address} ({len(workers)} worker(s)){f', dashboard {link}' if link else ''}"

    def close(self) -> None:
        if self._own:
            self.client.close()


def open_fanout(scheduler: str | None = None, n_jobs: int = 2):
    """A Dask client on ``scheduler`` (default DASK_SCHEDULER_ADDRESS), else the local pool of ``n_jobs``."""
    address = scheduler or os.environ.get(SCHEDULER_ENV) or ""
    return DaskFanout(address) if address else LocalFanout(n_jobs)
