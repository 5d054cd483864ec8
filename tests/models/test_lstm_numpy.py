"""The LSTM's numpy engine: same predictions as TensorFlow, saved with the bundle, no TF when serving.

Real data: the last 90 days of shared BTC and ETH candles in a temp SQLite store, turned into
the training features by ``datasets.build_dataset``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from crypto_predictor.datasets import build_dataset
from crypto_predictor.errors import BundleIntegrityError
from crypto_predictor.models.lstm import CELL_FILE, LSTMModel
from crypto_predictor.models.lstm_numpy import NumpyLSTM
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.slices import fill_store

REPO = Path(__file__).resolve().parents[2]
N_TEST = 300


@pytest.fixture(scope="module")
def store_url(tmp_path_factory, data_dir):
    url = f"sqlite:///{tmp_path_factory.mktemp('lstm_np') / 'store.db'}"
    fill_store(url, data_dir, ("bitcoin", "ethereum"), last_days=90)
    return url


@pytest.fixture(scope="module")
def dataset(store_url):
    from crypto_predictor.market.store import CandleStore

    ds = build_dataset(CandleStore(store_url), "bitcoin", "1h")
    return ds.X.to_numpy(), ds.y.to_numpy()


@pytest.fixture(scope="module")
def fitted(dataset):
    """Serving-like shape (lookback 24, every real feature), trained briefly: engines, not skill."""
    X, y = dataset
    return LSTMModel(lookback=24, units=16, epochs=2, batch_size=128, seed=3).fit(X[:-N_TEST], y[:-N_TEST])


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    directory = tmp_path_factory.mktemp("lstm_saved")
    files = fitted.save(directory)
    return directory, files


@pytest.fixture(scope="module")
def loaded(saved):
    return LSTMModel.load(saved[0])


def test_save_lists_the_plain_arrays_so_bundles_hash_them(saved):
    directory, files = saved
    assert CELL_FILE in files and (directory / CELL_FILE).is_file()
    with np.load(directory / CELL_FILE, allow_pickle=False) as arrays:
        assert arrays["kernel"].shape[1] == 4 * 16 and arrays["recurrent_kernel"].shape == (16, 64)


def test_loaded_model_uses_numpy_not_keras(fitted, loaded):
    assert fitted.network_ is not None
    assert loaded.network_ is None and isinstance(loaded.cell_, NumpyLSTM)


def test_numpy_agrees_with_tensorflow_on_real_features(fitted, loaded, dataset):
    X, _ = dataset
    X_test = X[-N_TEST:]
    tf_pred, np_pred = fitted.predict(X_test), loaded.predict(X_test)
    assert np.std(tf_pred) > 0  # a constant output would make the comparison vacuous
    # TensorFlow computes in float32: ~1e-7 relative per op; 1e-5 of the output's range is ample.
    assert np.abs(tf_pred - np_pred).max() <= 1e-5 * np.abs(tf_pred).max()
    tf_last, np_last = fitted.predict_last(X_test), loaded.predict_last(X_test)
    assert abs(tf_last - np_last) <= 1e-5 * np.abs(tf_pred).max()


def test_numpy_predict_last_is_the_last_row_of_predict(loaded, dataset):
    X, _ = dataset
    X_test = X[-N_TEST:]
    full = loaded.predict(X_test)
    assert loaded.predict_last(X_test) == pytest.approx(full[-1], rel=1e-12, abs=1e-15)
    assert loaded.predict_last(X_test[-24:]) == pytest.approx(full[-1], rel=1e-12, abs=1e-15)
    # Shorter than the lookback: both paths pad by repeating the first row.
    short = X_test[:5]
    assert loaded.predict_last(short) == pytest.approx(loaded.predict(short)[-1], rel=1e-12, abs=1e-15)
    # Rows older than the window do not matter; rows inside it do.
    changed = X_test.copy()
    changed[:-24] += 1.0
    assert loaded.predict(changed)[-1] == pytest.approx(full[-1], rel=1e-12, abs=1e-15)
    changed[-24] += 1.0
    assert loaded.predict(changed)[-1] != pytest.approx(full[-1], rel=1e-9, abs=1e-12)


def test_round_trip_of_a_loaded_model_gives_the_same_predictions(loaded, saved, dataset, tmp_path):
    X, _ = dataset
    X_test = X[-N_TEST:]
    files = loaded.save(tmp_path)  # rebuilds the Keras weights from the arrays
    assert set(files) == set(saved[1])
    again = LSTMModel.load(tmp_path)
    assert np.array_equal(again.predict(X_test), loaded.predict(X_test))
    assert (tmp_path / CELL_FILE).read_bytes() == (saved[0] / CELL_FILE).read_bytes()


def test_bundle_without_arrays_falls_back_to_tensorflow(fitted, saved, dataset, tmp_path):
    X, _ = dataset
    X_test = X[-N_TEST:]
    old = tmp_path / "old"
    shutil.copytree(saved[0], old)
    (old / CELL_FILE).unlink()
    model = LSTMModel.load(old)
    assert model.network_ is not None
    np.testing.assert_allclose(model.predict(X_test), fitted.predict(X_test), rtol=0, atol=1e-9)
    assert model.predict_last(X_test) == pytest.approx(fitted.predict_last(X_test), rel=1e-6, abs=1e-9)


def test_arrays_that_do_not_match_the_model_are_refused(saved, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(saved[0], bad)
    with np.load(bad / CELL_FILE, allow_pickle=False) as arrays:
        parts = dict(arrays)
    np.savez(bad / CELL_FILE, **{**parts, "recurrent_kernel": parts["recurrent_kernel"][:, :-1]})
    with pytest.raises(BundleIntegrityError):
        LSTMModel.load(bad)
    meta = json.loads((saved[0] / "model.json").read_text())
    meta["params"]["units"] = 8  # arrays of 16 units
    shutil.copy(saved[0] / CELL_FILE, bad / CELL_FILE)
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleIntegrityError):
        LSTMModel.load(bad)


def test_serving_an_lstm_bundle_never_imports_tensorflow(store_url, tmp_path):
    models = tmp_path / "models"
    version, _ = train_run(store_url, ["bitcoin"], ["1h"], TrainOptions(kinds=("lstm",), quick=True, seed=1),
                           models, n_jobs=1)
    set_alias(models, "production", version)
    code = textwrap.dedent(f"""
        import json, sys
        import pandas as pd
        from crypto_predictor.serving.pairs import load_bundle
        bundle = load_bundle({str(models)!r}, {version!r})
        kinds = sorted(pair.kind for pair in bundle.pairs.values())
        from crypto_predictor.api import create_app
        from crypto_predictor.config import TestConfig
        from crypto_predictor.serving.service import PredictionService
        config = TestConfig(DATABASE_URL={store_url!r}, MODELS_DIR={str(models)!r})
        now = pd.Timestamp("2021-10-01T00:05:00Z").timestamp()
        app = create_app(config, service=PredictionService(config, clock=lambda: now))
        response = app.test_client().post("/api/v1/predict", json={{"symbol": "bitcoin", "timeframe": "1h"}})
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"tensorflow", "keras"}})
        print(json.dumps({{"kinds": kinds, "status": response.status_code,
                          "price": response.get_json()["data"]["predicted_price"], "heavy": heavy}}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["kinds"] == ["lstm"] and report["status"] == 200 and report["price"] > 0
    assert report["heavy"] == []
