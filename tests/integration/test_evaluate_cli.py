"""evaluate_model.py through click's test runner, on a small real bundle trained once per module.

The bundle: bitcoin 1h, xgboost, --quick, trained on the 90 days before 2021-09-10 from a
120-day slice of the shared BTCUSDT/ETHUSDT candles (which end 2021-09-30T23:00Z), so a
re-test from 2021-09-11 is out of sample.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.registry.catalog import open_bundle
from crypto_predictor.registry.versions import version_number
from crypto_predictor.training.retest import RESULT_FIELDS, evaluate_pair
from crypto_predictor.market.store import CandleStore
from crypto_predictor.cli.train import train_command
from tests.conftest import DATA_DIR
from tests.support.slices import write_slice
from tests.support.cli import assert_one_line_error

REPO = Path(__file__).resolve().parents[2]
DATA = DATA_DIR
_spec = importlib.util.spec_from_file_location("evaluate_model", REPO / "evaluate_model.py")
evaluate_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate_model)
evaluate_command = evaluate_model.evaluate_command

TRAIN_END = "2021-09-10"
START = "2021-09-11"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """(models_dir, database_url, version, last candle time) of a quick xgboost bundle."""
    root = tmp_path_factory.mktemp("evaluate")
    last = pd.Timestamp("2021-09-30T23:00:00Z")  # the shared data's newest candle
    csv_dir = write_slice(DATA, root / "csv", last - pd.Timedelta(days=120) + pd.Timedelta(hours=1))
    url = f"sqlite:///{root / 'candles.db'}"
    models = root / "models"
    result = CliRunner().invoke(train_command, [
        "--quick", "--symbol", "bitcoin", "--timeframe", "1h", "--model", "xgboost", "--days", "90",
        "--end", TRAIN_END, "--data-dir", str(csv_dir), "--models-dir", str(models), "--jobs", "1",
    ], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output + repr(result.exception)
    version = result.stdout.strip().splitlines()[-1]
    assert version_number(version), result.output
    return models, url, version, last


@pytest.fixture(scope="module")
def ensemble_version(trained):
    """A second bundle in the same store: the quick ensemble of the default members."""
    models, url, _, _ = trained
    result = CliRunner().invoke(train_command, [
        "--quick", "--symbol", "bitcoin", "--timeframe", "1h", "--model", "ensemble", "--days", "90",
        "--end", TRAIN_END, "--models-dir", str(models), "--jobs", "1"], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout.strip().splitlines()[-1]


def run(trained, *args, models_dir=True):
    models, url, _, _ = trained
    argv = [str(a) for a in args] + (["--models-dir", str(models)] if models_dir else [])
    result = CliRunner().invoke(evaluate_command, argv, env={"DATABASE_URL": url})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_out_of_sample_json(trained, tmp_path):
    _, _, version, last = trained
    out = tmp_path / "eval.json"
    result = run(trained, "--version", version, "--start", START, "--json", out)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # the window starts after the training targets
    doc = json.loads(out.read_text())
    assert doc["version"] == version and doc["warnings"] == []
    rows = {r["model"]: r for r in doc["results"]}
    assert set(rows) == {"xgboost", "served", "naive", "baseline_quantile", "baseline_static"}
    assert len(doc["results"]) == 5
    # 1h targets: the last scored row is the hour before the last candle.
    expected_n = int((last - pd.Timedelta(hours=1) - pd.Timestamp(START, tz="UTC")) / pd.Timedelta(hours=1)) + 1
    assert doc["pairs"][0]["n"] == expected_n and doc["pairs"][0]["sample"] == "out_of_sample"
    assert doc["pairs"][0]["scored_start"].startswith(START)
    for row in rows.values():
        assert set(RESULT_FIELDS) <= set(row)
        assert (row["symbol"], row["timeframe"], row["n"]) == ("bitcoin", "1h", expected_n)
        for key in ("coverage_80", "coverage_95"):
            assert 0.0 <= row[key] <= 1.0
        assert row["coverage_80"] <= row["coverage_95"]
        assert row["interval_width_80"] > 0 and row["mae"] > 0 and row["rmse"] >= row["mae"]
        assert row["naive_mae"] == rows["naive"]["mae"]
    assert rows["naive"]["mase"] == 1.0 and rows["naive"]["directional_accuracy"] == 0.5
    for row in rows.values():  # the interval score is the width plus the penalties for misses
        assert row["interval_score_80"] >= row["interval_width_80"] and row["interval_score_95"] > 0
    assert rows["baseline_quantile"]["coverage_n_80"] == rows["served"]["coverage_n_80"]
    served = rows["served"]  # conditional coverage: per third of volatility at prediction time
    assert len(served["coverage_80_by_vol"]) == 3 and sum(served["n_by_vol"]) == expected_n
    assert all(0.0 <= c <= 1.0 for c in served["coverage_80_by_vol"] + served["coverage_95_by_vol"])
    # how far the coverage could be off by chance: more for a third of the rows than for all of them
    assert 0.0 < served["coverage_80_se"] < 0.2 and len(served["coverage_80_by_vol_se"]) == 3
    assert all(se > served["coverage_80_se"] for se in served["coverage_80_by_vol_se"])
    model = rows["xgboost"]
    assert model["mase"] == pytest.approx(model["mae"] / model["naive_mae"])
    assert 0.0 <= model["directional_accuracy"] <= 1.0
    # The stored out-of-sample residuals seed the intervals: every scored row has one.
    assert model["coverage_n_80"] == expected_n
    assert 0.6 <= model["coverage_80"] <= 0.95 and model["coverage_95"] >= 0.85  # loose sanity on real data
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["bitcoin", "1h", "naive"] for line in lines)
    assert any(line.split()[:3] == ["bitcoin", "1h", "served"] for line in lines)


def test_served_row_is_the_gated_base_forecast(trained):
    """The served row: the base kind's predictions times the bundle's shrinkage factor."""
    models, url, version, _ = trained
    bundle = open_bundle(models, version)
    evaluation = evaluate_pair(bundle, CandleStore(url), "bitcoin", "1h", START, None)
    served = bundle.read_json("bitcoin", "1h", "served", "calibration.json")
    assert served["base"] == "xgboost" and 0.0 <= served["shrink"] <= 1.0
    np.testing.assert_allclose(evaluation.kinds["served"].y_pred,
                               served["shrink"] * evaluation.kinds["xgboost"].y_pred)
    row = next(r for r in evaluation.rows if r["model"] == "served")
    if served["shrink"] == 0.0:
        assert row["mase"] == 1.0


def test_overlap_warning_when_window_is_in_training_range(trained):
    _, _, version, _ = trained
    result = run(trained, "--version", version, "--start", "2021-09-01", "--end", "2021-09-20")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "in-sample" in warnings[0] and "bitcoin 1h" in warnings[0]
    # --end drops candles after it: the last row whose 1h target is realised by then.
    assert "2021-09-19T23:00:00+00:00 (" in result.stdout


def test_intervals_are_causal(trained):
    """Later candles must not change anything already scored: the same rows, two different ends."""
    models, url, version, _ = trained
    bundle = open_bundle(models, version)
    store = CandleStore(url)
    short = evaluate_pair(bundle, store, "bitcoin", "1h", START, "2021-09-20")
    long = evaluate_pair(bundle, store, "bitcoin", "1h", START, None)
    n = len(short.index)
    assert n > 100 and len(long.index) > n and (long.index[:n] == short.index).all()
    a, b = short.kinds["xgboost"], long.kinds["xgboost"]
    np.testing.assert_array_equal(a.y_pred, b.y_pred[:n])
    for key in ("lower80", "upper95", "error_scale"):
        np.testing.assert_allclose(a.intervals[key], b.intervals[key][:n], rtol=0, atol=1e-15)
    np.testing.assert_allclose(a.confidence, b.confidence[:n], rtol=0, atol=1e-15)
    assert np.all((a.confidence > 0) & (a.confidence < 1))
    # Each scored row reads every residual realised before it, stored ones included, up to the window.
    c = b.conformal
    realised = np.searchsorted(c.res_pos, c.query_pos - c.horizon, side="right")
    np.testing.assert_array_equal(b.intervals["n_history"], np.minimum(realised, c.window))
    assert b.intervals["n_history"][0] > c.min_history and np.sum(c.res_pos < c.query_pos[0]) > 1000  # stored ones
    # the plot's reliability points are the re-test JSON's 10-bin table, bins with rows only
    from crypto_predictor.training.plots import confidence_reliability

    table, brier = confidence_reliability(long, "xgboost")
    row = next(r for r in long.rows if r["model"] == "xgboost")
    assert brier == pytest.approx(row["brier"]) and table["n"].sum() == row["brier_n"] > 0
    assert len(table) <= 10 and (table["n"] > 0).all()
    assert ((table["predicted"] >= table["bin"].str[0]) & (table["predicted"] <= table["bin"].str[1])).all()


def test_plots_and_model_path(trained, tmp_path):
    models, _, version, _ = trained
    plots = tmp_path / "plots"
    result = run(trained, "--model_path", models / version, "--start", START, "--symbol", "BTC",
                 "--timeframe", "1h", "--plots", plots, models_dir=False)
    assert result.exit_code == 0, result.output
    names = {"predictions", "residuals", "calibration", "importance", "folds"}
    written = sorted(p.name for p in plots.iterdir())
    assert written == sorted(f"bitcoin_1h_{n}.png" for n in names)
    for path in plots.iterdir():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, path


def test_version_alias_and_default_models_dir(trained):
    models, url, version, _ = trained
    set_alias(models, "challenger", version)
    result = CliRunner().invoke(evaluate_command, ["--version", "challenger", "--start", START],
                                env={"DATABASE_URL": url, "MODELS_DIR": str(models)})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"bundle {version}:")


def test_tampered_bundle_is_refused(trained, tmp_path):
    models, _, version, _ = trained
    copy = tmp_path / "models"
    shutil.copytree(models / version, copy / version)
    booster = copy / version / "bitcoin" / "1h" / "xgboost" / "booster.json"
    data = bytearray(booster.read_bytes())
    data[len(data) // 2] ^= 0x01
    booster.write_bytes(bytes(data))
    result = run(trained, "--version", version, "--models-dir", copy, models_dir=False)
    assert_one_line_error(result, "sha256", "booster.json")
    result = run(trained, "--model_path", copy / version, models_dir=False)
    assert_one_line_error(result, "sha256")


def test_unknown_version_lists_available(trained):
    _, _, version, _ = trained
    assert_one_line_error(run(trained, "--version", "v999"), "v999", "available versions", version)


def test_pair_not_in_bundle_and_empty_window(trained):
    _, _, version, _ = trained
    assert_one_line_error(run(trained, "--version", version, "--symbol", "ethereum"),
                          "ethereum/1h", "it has: bitcoin/1h")
    assert_one_line_error(run(trained, "--version", version, "--timeframe", "24h"), "24h", "bitcoin/1h")
    assert_one_line_error(run(trained, "--version", version, "--start", "2022-01-01"),
                          "no bitcoin 1h rows to score", "2022-01-01")
    bad = run(trained, "--version", version, "--start", "not-a-date")
    assert bad.exit_code == 2 and "--start" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow  # trains the quick ensemble
def test_ensemble_bundle(trained, ensemble_version, tmp_path):
    _, _, version, _ = trained
    out, plots = tmp_path / "ens.json", tmp_path / "plots"
    result = run(trained, "--version", ensemble_version, "--start", START, "--json", out, "--plots", plots)
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"ensemble", "served", "naive", "baseline_quantile", "baseline_static"}
    assert 0.8 <= rows["ensemble"]["mase"] <= 1.2 and rows["ensemble"]["coverage_n_80"] == rows["ensemble"]["n"]
    # The naive row depends on the data only, not on the bundle.
    other = tmp_path / "xgb.json"
    assert run(trained, "--version", version, "--start", START, "--json", other).exit_code == 0
    naive = next(r for r in json.loads(other.read_text())["results"] if r["model"] == "naive")
    assert naive == rows["naive"]
    assert {p.name for p in plots.iterdir()} >= {"bitcoin_1h_predictions.png", "bitcoin_1h_importance.png"}
