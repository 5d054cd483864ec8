"""`retrain`: a crafted bad live record trains and deploys a challenger; a good one does nothing.

One quick linear bundle (bitcoin, 1h, 30 days to 2021-09-20) is production. The store holds
candles to 2021-09-30 23:00; the jobs run "at" 2021-10-01 00:00 with a 14-day window.
"""

from __future__ import annotations

import shutil
import sqlite3

import pandas as pd
import pytest
from click.testing import CliRunner

from crypto_predictor.registry.aliases import ALIAS_FILE, get_aliases, set_alias
from crypto_predictor.registry.bundle import verify_bundle
from crypto_predictor.registry.versions import available_versions
from crypto_predictor.cli.main import cli
from crypto_predictor.storage.engine import make_engine
from crypto_predictor.storage.lock import JobLock
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.cli import assert_one_line_error
from tests.support.plog_rows import insert_rows, make_row, realised_close
from tests.support.slices import fill_store

AS_OF = "2021-10-01T00:00:00Z"
IN_WINDOW = pd.date_range("2021-09-26T00:00Z", periods=40, freq="2h")  # targets inside the 14 days
BEFORE_WINDOW = pd.date_range("2021-09-01T00:00Z", periods=40, freq="2h")  # targets before them


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """(database file, models dir) with production -> v1; copied per test, never changed."""
    root = tmp_path_factory.mktemp("retrain")
    url = f"sqlite:///{root / 'store.db'}"
    store = fill_store(url, data_dir, ("bitcoin", "ethereum"), start="2021-07-20T00:00Z")
    models = root / "models"
    version, _ = train_run(url, ["bitcoin"], ["1h"], TrainOptions(kinds=("linear",), quick=True, days=30,
                                                                  end="2021-09-20T00:00Z"), models, n_jobs=1)
    set_alias(models, "production", version)
    store.engine.dispose()
    return root / "store.db", models


@pytest.fixture()
def setup(trained, tmp_path):
    db, models = trained
    # SQLite's backup API, not a file copy: a copy could miss pages still in the WAL file.
    with sqlite3.connect(db) as src, sqlite3.connect(tmp_path / "store.db") as dst:
        src.backup(dst)
    shutil.copytree(models, tmp_path / "models")
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "MODELS_DIR": str(tmp_path / "models"),
           "RETRAIN_WINDOW_DAYS": "14", "RETRAIN_MIN_SAMPLES": "20", "RETRAIN_MIN_DIRECTION_ACCURACY": "0.48",
           "RETRAIN_MIN_COVERAGE80": "0.7"}
    return env, tmp_path / "models", make_engine(env["DATABASE_URL"])


def rows(candles, times, good: bool, asset="bitcoin", version="v1"):
    """Predictions that call every move right with wide intervals (good) or wrong with narrow ones."""
    out = []
    for t in times:
        cur, real = realised_close(candles, t), realised_close(candles, t + pd.Timedelta(hours=1))
        move = (real - cur) / cur
        out.append(make_row(candles, asset, "1h", version, t, move * 0.8 if good else -move,
                            0.05 if good else 1e-6, 0.08 if good else 2e-6))
    return out


def expected(candles, crafted) -> tuple[float, float]:
    hits = [(r["predicted_price"] - r["current_price"]) * (real - r["current_price"]) > 0
            for r in crafted if (real := realised_close(candles, r["target_time"])) != r["current_price"]]
    inside = [r["lower80"] <= realised_close(candles, r["target_time"]) <= r["upper80"] for r in crafted]
    return sum(hits) / len(hits), sum(inside) / len(inside)


def retrain(env, *args):
    return CliRunner().invoke(cli, ["retrain", "--as-of", AS_OF, *args], env=env)


def test_a_bad_live_record_trains_a_challenger_and_records_why(setup, btc_candles):
    env, models, engine = setup
    bad = rows(btc_candles, IN_WINDOW, good=False)
    insert_rows(engine, bad)
    accuracy, coverage = expected(btc_candles, bad)
    assert accuracy < 0.48 and coverage < 0.7

    result = retrain(env, "--quick", "--jobs", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"trigger: v1 bitcoin 1h: directional_accuracy {accuracy:.3f} < 0.480 (n=40, window 14 days)" in out
    assert f"trigger: v1 bitcoin 1h: coverage_80 {coverage:.3f} < 0.700 (n=40, window 14 days)" in out
    assert "challenger: (unset) -> v2" in out
    assert out.strip().splitlines()[-1] == "v2"
    assert get_aliases(models) == {"production": "v1", "challenger": "v2"}  # never production

    manifest = verify_bundle(models / "v2")  # the reason is sealed with the bundle's hashes
    assert (manifest["assets"], manifest["timeframes"], manifest["kinds"]) == (["bitcoin"], ["1h"], ["linear"])
    assert manifest["data_range"]["end_limit"] == pd.Timestamp(AS_OF).isoformat()
    record = manifest["extra"]["retrain"]
    assert record["production_version"] == "v1" and record["forced"] is False and record["promote"] is False
    assert record["window"] == {"since": "2021-09-17T00:00:00Z", "until": "2021-10-01T00:00:00Z"}
    triggers = {t["metric"]: t for t in record["triggers"]}
    assert set(triggers) == {"directional_accuracy", "coverage_80"}
    assert triggers["directional_accuracy"] == {
        "version": "v1", "asset": "bitcoin", "timeframe": "1h", "metric": "directional_accuracy",
        "value": pytest.approx(accuracy), "threshold": 0.48, "n": 40, "window_days": 14.0}
    assert triggers["coverage_80"]["value"] == pytest.approx(coverage)
    assert triggers["coverage_80"]["threshold"] == 0.7


def test_a_good_live_record_does_not_trigger(setup, btc_candles, eth_candles):
    env, models, engine = setup
    insert_rows(engine, rows(btc_candles, IN_WINDOW, good=True)
                + rows(btc_candles, BEFORE_WINDOW, good=False)  # bad, but outside the rolling window
                + rows(eth_candles, IN_WINDOW[:5], good=False, asset="ethereum"))  # bad, but only 5 samples
    result = retrain(env, "--quick")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "nothing triggered: no retraining"
    assert "trigger:" not in result.output
    (btc,) = [line for line in lines if line.split()[:2] == ["bitcoin", "1h"]]
    assert "n=40" in btc and "dir.acc 1.000" in btc and "cov80 1.000" in btc and btc.endswith("ok")
    (eth,) = [line for line in lines if line.split()[:2] == ["ethereum", "1h"]]
    assert "n=5" in eth and eth.endswith("too few samples (< 20)")
    assert available_versions(models) == ["v1"]
    assert get_aliases(models) == {"production": "v1"}


def test_dry_run_shows_the_decision_and_trains_nothing(setup, btc_candles):
    env, models, engine = setup
    insert_rows(engine, rows(btc_candles, IN_WINDOW, good=False))
    result = retrain(env, "--quick", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "trigger: v1 bitcoin 1h: directional_accuracy" in result.output
    assert result.output.splitlines()[-1] == ("dry run: would train bitcoin x 1h x linear (quick), days=30 and "
                                              "deploy it as challenger; nothing trained")
    assert sorted(p.name for p in models.iterdir() if p.name.startswith("v")) == ["v1"]
    assert get_aliases(models) == {"production": "v1"}


def test_force_promote_retrains_regardless_and_moves_production(setup, btc_candles):
    env, models, engine = setup
    insert_rows(engine, rows(btc_candles, IN_WINDOW, good=True))
    result = retrain(env, "--quick", "--jobs", "1", "--force", "--promote")
    assert result.exit_code == 0, result.output
    assert "forced: retraining regardless of live accuracy" in result.output
    assert "production: v1 -> v2" in result.output
    assert get_aliases(models) == {"production": "v2", "challenger": "v2"}
    record = verify_bundle(models / "v2")["extra"]["retrain"]
    assert record["forced"] is True and record["promote"] is True and record["triggers"] == []


def test_without_a_production_version_nothing_is_checked(setup):
    env, models, _ = setup
    (models / ALIAS_FILE).unlink()
    result = retrain(env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["no production version is deployed: nothing to check",
                                          "nothing triggered: no retraining"]


def test_a_second_retrain_while_one_runs_refuses_with_one_line(setup, btc_candles):
    env, models, engine = setup
    insert_rows(engine, rows(btc_candles, IN_WINDOW, good=False))
    with JobLock(engine, "retrain", 600, owner="trainer:9:beef"):
        result = retrain(env, "--quick", "--dry-run")
    assert_one_line_error(result, "job 'retrain' is already running", "trainer:9:beef")
    assert available_versions(models) == ["v1"]
