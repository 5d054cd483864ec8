"""The record of cron job runs: the newest per job, failures kept with their message."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from crypto_predictor.errors import DataNotFound
from crypto_predictor.storage.job_runs import last_runs, record_run


def test_the_newest_run_of_each_job_with_its_outcome(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    assert last_runs(engine) == {"refresh": None, "verify": None, "retrain": None}  # no table yet
    with record_run(engine, "verify") as run:
        run.summary = "filled 3"
    with pytest.raises(DataNotFound):
        with record_run(engine, "verify"):
            raise DataNotFound("no candles stored for bitcoin")
    with record_run(engine, "refresh") as run:
        run.ok, run.summary = False, "1 failed"
    runs = last_runs(engine)
    assert runs["verify"]["ok"] is False and runs["verify"]["summary"] == "no candles stored for bitcoin"
    assert runs["refresh"] == {**runs["refresh"], "ok": False, "summary": "1 failed"}
    assert runs["retrain"] is None and runs["refresh"]["seconds"] >= 0
    assert runs["refresh"]["finished_at"].endswith("Z")


def test_a_store_that_refuses_the_record_does_not_fail_the_job(tmp_path, caplog):
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'runs.db'}")  # its folder does not exist
    with record_run(engine, "refresh") as run:
        run.summary = "ok"
    assert "could not record the refresh run" in caplog.text
