"""Database URLs in fan-out tasks: whole for the workers, masked wherever Dask prints a task's arguments."""

from __future__ import annotations

import pickle

from distributed.worker import convert_args_to_str

from crypto_predictor.market.store import CandleStore
from crypto_predictor.storage.engine import TaskUrl, make_engine, shareable_url
from crypto_predictor.training.fanout import LocalFanout
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.slices import fill_store

SECRET = "postgresql://ops:s3cret-pw@db.internal:5432/prices"


def test_the_password_is_masked_in_reprs_and_kept_for_the_workers():
    url = TaskUrl(SECRET)
    assert url == SECRET and str(url) == SECRET and isinstance(url, str)
    assert "s3cret" not in repr(url) and "ops:***@db.internal" in repr(url)
    # Dask writes a failed task's arguments with this function
    assert "s3cret" not in convert_args_to_str((url, "bitcoin", "1h"))
    back = pickle.loads(pickle.dumps(url))
    assert back == SECRET and type(back) is TaskUrl
    assert repr(TaskUrl("not a url")) == "'<unparsable database URL>'"
    assert make_engine(TaskUrl(SECRET)).url.password == "s3cret-pw"


class _Recording(LocalFanout):
    def __init__(self):
        super().__init__(1)
        self.args = []

    def map(self, fn, tasks, local_processes: bool = True):
        tasks = list(tasks)
        self.args += [a for task in tasks for a in task]
        return super().map(fn, tasks, local_processes)

    def imap_unordered(self, fn, tasks):
        return iter(self.map(fn, tasks))  # map records the arguments


def test_training_tasks_carry_the_url_masked(tmp_path, data_dir):
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    fill_store(url, data_dir, ("bitcoin",), last_days=60)
    assert isinstance(shareable_url(CandleStore(url).engine), TaskUrl)
    fanout = _Recording()
    train_run(url, ["bitcoin"], ["1h"], TrainOptions(kinds=("linear",), quick=True, design="pair"),
              tmp_path / "models", fanout=fanout)
    urls = [a for a in fanout.args if isinstance(a, str) and a.startswith("sqlite")]
    assert urls and all(type(a) is TaskUrl for a in urls)
