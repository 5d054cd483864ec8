"""The numpy evaluator of xgboost trees: bit-identical to xgboost, and what serving uses.

Real data: the last 120 days of shared BTC and ETH candles in a temp SQLite store, turned
into the training features by ``datasets.build_dataset``. Agreement is asserted exactly:
the evaluator adds leaves in float32 in xgboost's order, so any difference is a bug.
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
from crypto_predictor.models import EnsembleModel
from crypto_predictor.models._booster import BOOSTER_FILE
from crypto_predictor.models.random_forest import RandomForestModel
from crypto_predictor.models.tree_numpy import NumpyTrees, UnsupportedModel
from crypto_predictor.models.xgboost_model import XGBoostModel
from tests.support.slices import fill_store

REPO = Path(__file__).resolve().parents[2]
N_TEST = 400
# Small models prove the same as full-size ones (depth 8 forest, several boosting rounds);
# the full-size defaults are checked once, in test_full_size_models_agree.
SMALL = {
    "xgboost": lambda: XGBoostModel(n_estimators=40, max_depth=4, learning_rate=0.1, seed=1),
    "random_forest": lambda: RandomForestModel(n_estimators=25, max_depth=8, min_child_weight=5.0, seed=1),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    from crypto_predictor.market.store import CandleStore

    url = f"sqlite:///{tmp_path_factory.mktemp('trees_np') / 'store.db'}"
    fill_store(url, data_dir, ("bitcoin", "ethereum"), last_days=120)
    ds = build_dataset(CandleStore(url), "bitcoin", "1h")
    return ds.X.to_numpy(), ds.y.to_numpy()


@pytest.fixture(scope="module", params=sorted(SMALL))
def fitted(request, dataset):
    X, y = dataset
    return SMALL[request.param]().fit(X[:-N_TEST], y[:-N_TEST])


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"saved_{fitted.kind}")
    fitted.save(directory)
    return directory


def _xgb(booster, X):
    return booster.inplace_predict(np.ascontiguousarray(X), predict_type="value").astype(np.float64)


def test_evaluator_matches_xgboost_exactly_on_every_row(fitted, dataset):
    X, _ = dataset  # training rows included: they sit exactly on split thresholds (x == split goes right)
    expected = _xgb(fitted.booster_, X)
    assert np.std(expected) > 0  # a constant output would make the comparison vacuous
    np.testing.assert_array_equal(fitted.trees_.predict(X), expected)
    rows = X[-N_TEST:]
    single = np.array([fitted.trees_.predict_row(row) for row in rows])
    np.testing.assert_array_equal(single, expected[-N_TEST:])


def test_predict_last_is_the_last_row_of_predict(fitted, dataset):
    X, _ = dataset
    for end in range(len(X) - 60, len(X) + 1, 3):
        window = X[end - 30 : end]
        full = fitted.predict(window)  # 30 rows: xgboost's batch path
        assert fitted.predict_last(window) == full[-1]  # numpy's single-row path
        assert fitted.predict(window[-5:])[-1] == full[-1]  # numpy's small-batch path


def test_fitted_and_loaded_models_serve_from_numpy_with_the_same_results(fitted, saved, dataset):
    X, _ = dataset
    loaded = type(fitted).load(saved)
    assert isinstance(loaded.trees_, NumpyTrees) and loaded.trees_.n_trees == fitted.trees_.n_trees
    for name in ("features", "thresholds", "default_left"):
        for a, b in zip(getattr(loaded.trees_, name), getattr(fitted.trees_, name)):
            np.testing.assert_array_equal(a, b)
    expected = [fitted.predict_last(X[:end]) for end in range(len(X) - 20, len(X) + 1)]
    assert [loaded.predict_last(X[:end]) for end in range(len(X) - 20, len(X) + 1)] == expected
    # Long batches too (the fitted model runs them through xgboost, the loaded one in numpy).
    np.testing.assert_array_equal(loaded.predict(X[-N_TEST:]), fitted.predict(X[-N_TEST:]))
    assert loaded._booster is None  # serving never built an xgboost Booster
    # Asked for (feature importance), the Booster is built from the JSON that was read.
    assert loaded.booster_.get_score(importance_type="total_gain") == \
        fitted.booster_.get_score(importance_type="total_gain")


def test_serving_a_loaded_model_never_imports_xgboost(saved, fitted, dataset, tmp_path):
    X, _ = dataset
    np.save(tmp_path / "X.npy", X[-N_TEST:])
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from crypto_predictor.models import get_model_class
        X = np.load({str(tmp_path / "X.npy")!r})
        model = get_model_class({fitted.kind!r}).load({str(saved)!r})
        out = [model.predict_last(X), model.predict(X)[-1]]
        print(json.dumps({{"out": out, "xgboost": "xgboost" in sys.modules}}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["xgboost"] is False
    assert report["out"] == [fitted.predict_last(X[-N_TEST:])] * 2


def test_save_of_a_loaded_model_writes_the_same_booster(saved, fitted, tmp_path):
    loaded = type(fitted).load(saved)
    loaded.save(tmp_path / "again")  # the bytes that were read, whether or not the Booster was built
    assert (tmp_path / "again" / BOOSTER_FILE).read_bytes() == (saved / BOOSTER_FILE).read_bytes()
    again = type(fitted).load(tmp_path / "again")
    np.testing.assert_array_equal(again.trees_.leaves, fitted.trees_.leaves)


def test_without_the_evaluator_xgboost_serves_the_same_values(fitted, saved, dataset):
    X, _ = dataset
    loaded = type(fitted).load(saved)
    expected = loaded.predict_last(X[-30:])
    loaded.trees_ = None  # what a booster the evaluator refuses (UnsupportedModel) gets
    assert loaded._booster is None  # built on demand below
    assert loaded.predict_last(X[-30:]) == expected
    np.testing.assert_array_equal(loaded.predict(X[-8:]), fitted.predict(X[-8:]))


def test_full_size_models_agree(dataset):
    X, y = dataset
    for model in (XGBoostModel(), RandomForestModel()):  # the defaults the project trains
        model.fit(X[:-N_TEST], y[:-N_TEST])
        rows = X[-N_TEST:]
        expected = _xgb(model.booster_, rows)
        assert model.trees_.depth == model.max_depth and model.trees_.n_trees == model.n_estimators
        np.testing.assert_array_equal(model.trees_.predict(rows), expected)
        assert [model.predict_last(rows[: i + 1]) for i in range(len(rows) - 50, len(rows))] == list(expected[-50:])


def test_missing_values_follow_each_node_default_direction(dataset):
    # The model contract refuses NaN, but the evaluator mirrors xgboost's missing-value rule
    # too: trained on rows with holes, xgboost learns a default direction per split.
    import xgboost as xgb

    X, y = dataset
    rng = np.random.default_rng(5)
    holes = np.where(rng.random(X.shape) < 0.15, np.nan, X)
    params = {"objective": "reg:squarederror", "tree_method": "hist", "max_depth": 6, "eta": 0.3,
              "num_parallel_tree": 4, "subsample": 0.7, "verbosity": 0, "nthread": 1, "seed": 2}
    booster = xgb.train(params, xgb.QuantileDMatrix(holes[:-N_TEST], label=y[:-N_TEST]), num_boost_round=6)
    trees = NumpyTrees.from_json(booster.save_raw("json"))
    used = np.concatenate([d[t != 0] for d, t in zip(trees.default_left, trees.thresholds)])
    assert used.any() and not used.all()  # both default directions occur
    rows = holes[-N_TEST:]
    expected = _xgb(booster, rows)
    np.testing.assert_array_equal(trees.predict(rows), expected)
    np.testing.assert_array_equal([trees.predict_row(r) for r in rows], expected)
    assert not np.array_equal(expected, _xgb(booster, np.nan_to_num(rows)))  # the holes mattered


def test_what_it_does_not_reproduce_is_refused(dataset, fitted):
    import xgboost as xgb

    X, y = dataset
    logistic = xgb.train({"objective": "reg:logistic", "max_depth": 2, "verbosity": 0},
                         xgb.DMatrix(X[:500], label=(y[:500] > 0).astype(float)), num_boost_round=2)
    with pytest.raises(UnsupportedModel):
        NumpyTrees.from_json(logistic.save_raw("json"))
    raw = json.loads(fitted.booster_.save_raw("json"))
    raw["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][0] = 10**6
    with pytest.raises(BundleIntegrityError):
        NumpyTrees.from_json(json.dumps(raw))
    with pytest.raises(BundleIntegrityError):
        NumpyTrees.from_json(b"not json")


def test_booster_of_another_width_is_refused_on_load(saved, fitted, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    meta = json.loads((bad / "model.json").read_text())
    meta["n_features_in"] += 1
    meta["feature_names_in"] = None
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleIntegrityError):
        type(fitted).load(bad)


def test_ensemble_predict_last_is_the_last_row_of_predict(dataset, tmp_path):
    X, y = dataset
    members = ("linear", "random_forest", "xgboost")
    model = EnsembleModel.quick(members=members).fit(X[:-N_TEST], y[:-N_TEST])
    model.save(tmp_path / "ens")
    loaded = EnsembleModel.load(tmp_path / "ens")
    rows = X[-40:]
    assert loaded.predict_last(rows) == pytest.approx(loaded.predict(rows)[-1], rel=1e-12, abs=1e-15)
    assert loaded.predict_last(rows) == pytest.approx(model.predict_last(rows), rel=1e-12, abs=1e-15)
    # A member whose width differs from the ensemble's is refused when the bundle is read.
    meta_path = tmp_path / "ens" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["n_features_in"] += 1
    meta["feature_names_in"] = None
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleIntegrityError):
        EnsembleModel.load(tmp_path / "ens")
