"""`verify`: realised prices filled into a crafted prediction log, scores checked against our own sums."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from crypto_predictor.storage.tables import prediction_log
from crypto_predictor.timeutil import utc
from crypto_predictor.cli.main import cli
from crypto_predictor.storage.engine import make_engine
from crypto_predictor.storage.lock import JobLock
from tests.support.cli import assert_one_line_error
from tests.support.plog_rows import insert_rows, make_row, realised_close
from tests.support.slices import fill_store

STORE_END = pd.Timestamp("2021-09-30T12:00Z")  # newest stored candle (opens 12:00, closes 13:00)


@pytest.fixture()
def logged(tmp_path, data_dir, btc_candles, eth_candles):
    """(database url, crafted rows): candles to 2021-09-30 12:00 and a log of two versions."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    fill_store(url, data_dir, ("bitcoin", "ethereum"), start="2021-09-15T00:00Z", end=STORE_END)
    rng = np.random.default_rng(7)
    candles = {"bitcoin": btc_candles, "ethereum": eth_candles}
    plan = [("v1", "bitcoin", "1h", pd.date_range("2021-09-27T00:00Z", "2021-09-30T09:00Z", freq="3h")),
            ("v1", "bitcoin", "24h", pd.date_range("2021-09-25T00:00Z", "2021-09-29T12:00Z", freq="6h")),
            ("v2", "ethereum", "1h", pd.date_range("2021-09-28T01:00Z", "2021-09-30T10:00Z", freq="2h"))]
    rows = []
    for version, asset, tf, times in plan:
        for t in times:
            band80 = rng.uniform(0.001, 0.02)
            rows.append(make_row(candles[asset], asset, tf, version, t, rng.normal(0, 0.005), band80, band80 * 1.6))
    # The same prediction logged again by another worker: scored once, by its first row.
    dup = dict(rows[3], predicted_price=rows[3]["current_price"] * 2, lower80=0.0, upper80=1e9)
    # Its target (2021-10-01 06:00) is beyond the stored candles: stays pending.
    pending = make_row(btc_candles, "bitcoin", "24h", "v1", "2021-09-30T06:00Z", 0.01, 0.01, 0.02)
    insert_rows(_engine(url), rows + [dup, pending])
    return url, rows, candles


def _engine(url):
    return make_engine(url)


def expected_scores(rows, candles, since=None, until=None) -> dict:
    """Direction accuracy and coverage per (version, asset, timeframe), computed here row by row."""
    groups = {}
    for r in rows:
        if since is not None and not (since < r["target_time"] <= until):
            continue
        real = realised_close(candles[r["asset"]], r["target_time"])
        cur, pred = r["current_price"], r["predicted_price"]
        g = groups.setdefault((r["model_version"], r["asset"], r["timeframe"]), {"hits": [], "in80": [], "in95": []})
        if real != cur:
            g["hits"].append(1.0 if (pred - cur) * (real - cur) > 0 else 0.0)
        g["in80"].append(r["lower80"] <= real <= r["upper80"])
        g["in95"].append(r["lower95"] <= real <= r["upper95"])
    return {k: {"n": len(g["in80"]), "directional_accuracy": np.mean(g["hits"]),
                "coverage_80": np.mean(g["in80"]), "coverage_95": np.mean(g["in95"])} for k, g in groups.items()}


def by_key(groups):
    return {(g["model_version"], g["asset"], g["timeframe"]): g for g in groups}


def test_verify_fills_outcomes_and_scores_each_version_asset_and_timeframe(logged):
    url, rows, candles = logged
    env = {"DATABASE_URL": url}
    result = CliRunner().invoke(cli, ["verify", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["filled"] == len(rows) + 1  # the duplicate row is filled too
    assert report["pending"] == 1
    expected = expected_scores(rows, candles)
    got = by_key(report["groups"])
    assert set(got) == set(expected) == {("v1", "bitcoin", "1h"), ("v1", "bitcoin", "24h"), ("v2", "ethereum", "1h")}
    for key, want in expected.items():
        assert got[key]["n"] == want["n"]
        for metric in ("directional_accuracy", "coverage_80", "coverage_95"):
            assert got[key][metric] == pytest.approx(want[metric], abs=1e-6), (key, metric)
    # Not degenerate: the crafted rows give scores strictly between 0 and 1 somewhere.
    assert any(0 < w["coverage_80"] < 1 for w in expected.values())
    assert any(0 < w["directional_accuracy"] < 1 for w in expected.values())

    engine = _engine(url)
    with engine.connect() as conn:
        stored = conn.execute(select(prediction_log.c.target_time, prediction_log.c.asset,
                                     prediction_log.c.realised_price)
                              .where(prediction_log.c.realised_price.is_not(None))).all()
    for target, asset, price in stored:
        assert price == realised_close(candles[asset], utc(target))

    again = CliRunner().invoke(cli, ["verify", "--json"], env=env)
    assert again.exit_code == 0, again.output
    repeat = json.loads(again.output)
    assert repeat["filled"] == 0 and repeat["groups"] == report["groups"]  # idempotent

    table = CliRunner().invoke(cli, ["verify"], env=env)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0] == "filled 0 realised price(s); 1 prediction(s) still pending"
    assert lines[1].split() == ["VERSION", "ASSET", "TF", "N", "DIR.ACC", "COV80", "COV95", "MAE%", "MASE"]
    v1 = expected[("v1", "bitcoin", "1h")]
    (row,) = [line.split() for line in lines[2:] if line.split()[:3] == ["v1", "bitcoin", "1h"]]
    assert row[3:6] == [str(v1["n"]), f"{v1['directional_accuracy']:.1%}", f"{v1['coverage_80']:.1%}"]


def test_verify_days_scores_only_the_window(logged):
    url, rows, candles = logged
    result = CliRunner().invoke(cli, ["verify", "--json", "--days", "2", "--as-of", "2021-09-30T12:00Z"],
                                env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    until = pd.Timestamp("2021-09-30T12:00Z")
    expected = expected_scores(rows, candles, since=until - pd.Timedelta(days=2), until=until)
    got = by_key(report["groups"])
    assert set(got) == set(expected)
    assert sum(g["n"] for g in got.values()) < len(rows)  # the window really cut rows out
    for key, want in expected.items():
        assert got[key]["n"] == want["n"]
        assert got[key]["coverage_80"] == pytest.approx(want["coverage_80"], abs=1e-6)
        assert got[key]["directional_accuracy"] == pytest.approx(want["directional_accuracy"], abs=1e-6)
    assert report["window"] == {"days": 2.0, "since": "2021-09-28T12:00:00Z", "until": "2021-09-30T12:00:00Z"}


def test_a_second_verify_while_one_runs_refuses_with_one_line(logged):
    url, _, _ = logged
    engine = _engine(url)
    with JobLock(engine, "verify", 600, owner="cron-host:4242:abcd"):
        result = CliRunner().invoke(cli, ["verify"], env={"DATABASE_URL": url})
    assert_one_line_error(result, "job 'verify' is already running", "cron-host:4242:abcd")
    with engine.connect() as conn:  # refused before touching the log
        assert conn.execute(select(prediction_log.c.id)
                            .where(prediction_log.c.realised_price.is_not(None))).first() is None
    assert CliRunner().invoke(cli, ["verify"], env={"DATABASE_URL": url}).exit_code == 0  # free again
