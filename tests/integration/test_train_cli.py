"""train_model.py through CliRunner on a small slice of the shared data with --quick."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from crypto_predictor.datasets import build_dataset
from crypto_predictor.market.store import CandleStore
from crypto_predictor.models import load_model
from crypto_predictor.registry.catalog import open_bundle
from crypto_predictor.registry.bundle import verify_bundle
from crypto_predictor.cli.train import train_command
from tests.support.slices import write_slice


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory, data_dir):
    """122 days of BTC and ETH hourly candles in the shared format, in a temp dir."""
    return write_slice(data_dir, tmp_path_factory.mktemp("ohlcv"), "2021-06-01T00:00:00Z")


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, slice_dir):
    root = tmp_path_factory.mktemp("train")
    env = {"DATABASE_URL": f"sqlite:///{root / 'store.db'}", "MODELS_DIR": str(root / "models")}
    result = CliRunner().invoke(train_command, [
        "--symbol", "bitcoin", "--symbol", "ETH", "--timeframe", "1h", "--timeframe", "24h", "--model", "linear",
        "--data-dir", str(slice_dir), "--quick", "--days", "60", "--design", "pair"], env=env)
    return result, env


def test_linear_training_writes_a_verified_bundle_with_honest_metrics(linear_run):
    result, env = linear_run
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "v1"  # the last line is the new version id
    manifest = verify_bundle(f"{env['MODELS_DIR']}/v1")
    assert manifest["assets"] == ["bitcoin", "ethereum"] and manifest["kinds"] == ["linear"]
    for asset in ("bitcoin", "ethereum"):
        for tf in ("1h", "24h"):
            rows = manifest["metrics"]["overall"][asset][tf]
            assert set(rows) == {"linear", "naive", "served", "baseline_quantile", "baseline_static"}
            for row in rows.values():  # width plus miss penalties: never below the width
                assert row["interval_score_80"] >= row["interval_width_80"] > 0
            assert rows["served"]["base"] == "linear" and 0.0 <= rows["served"]["shrink"] <= 1.0
            assert rows["served"]["n"] == rows["naive"]["n"]
            assert rows["naive"]["mase"] == pytest.approx(1.0)
            assert rows["linear"]["n"] == rows["naive"]["n"] > 100
            assert 0.0 <= rows["linear"]["coverage_80"] <= 1.0
            assert len(manifest["metrics"]["folds"][asset][tf]["linear"]) == 2
    pair = json.loads((open_bundle(env["MODELS_DIR"], "v1").artifact("bitcoin", "24h", "pair.json")).read_text())
    assert pair["bar"] == "1h" and pair["horizon"] == 24 and pair["context"] == ["ethereum"]


def test_saved_model_reproduces_its_predictions_on_the_stored_features(linear_run):
    _, env = linear_run
    bundle = open_bundle(env["MODELS_DIR"], "v1")
    model = load_model(bundle.artifact("ethereum", "1h", "linear", "model.json").parent)
    ds = build_dataset(CandleStore(env["DATABASE_URL"]), "ethereum", "1h", days=60)
    assert list(ds.X.columns) == model.feature_names_in_
    pred = model.predict(ds.X)
    assert pred.shape == (len(ds.X),) and np.isfinite(pred).all()
    assert np.array_equal(pred, load_model(bundle.artifact("ethereum", "1h", "linear", "model.json").parent).predict(ds.X))


def test_every_kind_and_the_ensemble_in_quick_mode(tmp_path, slice_dir):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "MODELS_DIR": str(tmp_path / "models")}
    result = CliRunner().invoke(train_command, ["--symbol", "bitcoin", "--timeframe", "1h", "--data-dir",
                                                str(slice_dir), "--quick", "--days", "45", "--jobs", "1",
                                                "--design", "pair"], env=env)
    assert result.exit_code == 0, result.output
    manifest = verify_bundle(tmp_path / "models" / "v1")
    rows = manifest["metrics"]["overall"]["bitcoin"]["1h"]
    # The default: every kind but the LSTM (a kind on request only), and their ensemble.
    assert set(rows) == {"linear", "random_forest", "xgboost", "ensemble", "naive", "served", "baseline_quantile",
                         "baseline_static"}
    assert rows["served"]["base"] == "ensemble"
    calibration = json.loads((tmp_path / "models/v1/bitcoin/1h/ensemble/calibration.json").read_text())
    # 22 days before the test folds fit no stable HAR forecast (its persistence comes out far above 1),
    # so the intervals keep the EWMA scale (a HAR-scaled bundle: tests/api/test_predict.py)
    assert calibration["conformal"]["har"] is None and calibration["conformal"]["vol_span"] == 24
    weights = calibration["weights"]
    assert set(weights) == {"linear", "random_forest", "xgboost"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5) and min(weights.values()) >= 0
    # the residual history serving needs is there, with times in order
    times = calibration["residuals"]["time"]
    assert len(times) == len(calibration["residuals"]["residual"]) > 100 and times == sorted(times)


@pytest.mark.parametrize("args, message", [
    (["--timeframe", "2h"], "unknown timeframe '2h'; valid: 1h, 24h, 7d, 30d"),
    (["--symbol", "NOPE"], "unknown symbol 'NOPE'"),
    (["--symbol", "ripple"], "no hourly candles stored for ripple"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "MODELS_DIR": str(tmp_path / "models")}
    result = CliRunner().invoke(train_command, ["--model", "linear", "--quick", *args], env=env)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "models" / "v1").exists()  # a failed run leaves no half bundle


def test_pairs_with_too_little_history_are_skipped_and_reported(tmp_path, slice_dir):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "MODELS_DIR": str(tmp_path / "models")}
    # 120 days of candles cannot feed 7d models on daily bars (168 bars of feature warm-up)
    result = CliRunner().invoke(train_command, ["--symbol", "bitcoin", "--timeframe", "1h", "--timeframe", "7d",
                                                "--model", "linear", "--quick", "--data-dir", str(slice_dir)], env=env)
    assert result.exit_code == 0, result.output
    assert "skipped bitcoin 7d: bitcoin 7d: only 0 usable rows" in result.output
    manifest = verify_bundle(tmp_path / "models" / "v1")
    assert list(manifest["metrics"]["overall"]["bitcoin"]) == ["1h"]
    assert "bitcoin/7d" in manifest["extra"]["skipped"]
    nothing = CliRunner().invoke(train_command, ["--symbol", "bitcoin", "--timeframe", "30d", "--model", "linear",
                                                 "--quick"], env=env)
    assert nothing.exit_code == 1 and "nothing to train" in nothing.output
    assert not (tmp_path / "models" / "v2").exists()


def test_the_default_design_is_the_measured_one_global_when_its_context_is_stored(tmp_path, slice_dir):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "MODELS_DIR": str(tmp_path / "models")}
    result = CliRunner().invoke(train_command, ["--symbol", "BTC", "--symbol", "ETH", "--timeframe", "1h",
                                                "--model", "linear", "--quick", "--days", "30",
                                                "--data-dir", str(slice_dir)], env=env)
    assert result.exit_code == 0, result.output
    manifest = verify_bundle(tmp_path / "models" / "v1")
    assert manifest["extra"]["design"]["1h"]["design"] == "global"
    assert manifest["extra"]["design"]["1h"]["chosen"] == "auto"
    evidence = manifest["extra"]["design"]["1h"]["evidence"]["ensemble_mase"]
    assert evidence["global"] < evidence["pair"]  # the measurement auto follows
    assert manifest["extra"]["design"]["1h"]["assets"] == ["bitcoin", "ethereum"]
    pair = json.loads((tmp_path / "models/v1/bitcoin/1h/pair.json").read_text())
    assert pair["design"] == "global" and pair["context"] == ["bitcoin", "ethereum"]
