"""The contract every model kind keeps: shapes, errors, persistence, determinism, skill."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from crypto_predictor.errors import (
    BundleIntegrityError,
    InvalidInput,
    ModelNotFound,
    NotFittedError,
    UnknownModelKind,
)
from crypto_predictor.models import (
    KINDS,
    EnsembleModel,
    LinearModel,
    XGBoostModel,
    get_model_class,
    inverse_mse_weights,
    load_model,
)
from crypto_predictor.models.base import chronological_split

ALL_KINDS = list(KINDS)
SEEDED_KINDS = ["linear", "random_forest", "xgboost"]
# Kinds whose arithmetic runs in TensorFlow float32: compared with a tolerance.
TF_KINDS = {"lstm", "ensemble"}
N_TRAIN, N_TEST, N_FEATURES = 1000, 300, 6


def synthetic(n: int, seed: int = 0):
    """Features with a learnable signal (linear part plus an interaction) and noise, return-sized."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 5] = 50.0 + 10.0 * X[:, 5]  # one column on another scale: standardisation must cope
    signal = X[:, 0] - 0.5 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3]
    y = 0.01 * signal + 0.005 * rng.normal(size=n)
    return X, y


@pytest.fixture(scope="module")
def data():
    X, y = synthetic(N_TRAIN + N_TEST)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


@pytest.fixture(scope="module")
def fitted(data):
    """One quick model per kind, fitted once for the whole module."""
    X, y, _, _ = data
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = get_model_class(kind).quick().fit(X, y)
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def real_features(btc_candles):
    """A slice of real BTC hourly candles turned into a few honest (past-only) features."""
    n_rows = 2500
    candles = btc_candles.tail(n_rows + 48)
    close = np.log(candles["close"].to_numpy(float))
    ret = pd.Series(np.diff(close, prepend=close[0]))
    volume = pd.Series(np.log1p(candles["volume"].to_numpy(float)))
    frame = pd.DataFrame({f"ret_{k}": ret.shift(k) for k in range(4)})
    frame["vol_24"] = ret.rolling(24).std()
    frame["mom_24"] = ret.rolling(24).sum()
    frame["log_volume"] = volume  # raw level ~10: scale differs from returns
    target = pd.Series(close).shift(-1) - pd.Series(close)
    ok = frame.notna().all(axis=1) & target.notna()
    return frame[ok].to_numpy(float), target[ok].to_numpy(float)


def assert_same(kind, a, b):
    if kind in TF_KINDS:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    else:
        assert np.array_equal(a, b)


# ---- registry and import hygiene -------------------------------------------------


def test_registry_names_every_kind():
    assert set(KINDS) == {"linear", "random_forest", "xgboost", "lstm", "ensemble"}
    for name, cls in KINDS.items():
        assert cls.kind == name
        assert get_model_class(name) is cls


def test_unknown_kind_lists_valid_names():
    with pytest.raises(UnknownModelKind) as info:
        get_model_class("prophet")
    for name in KINDS:
        assert name in str(info.value)
    assert info.value.details["valid"] == list(KINDS)


def test_importing_models_does_not_import_tensorflow():
    code = (
        "import sys, crypto_predictor.models\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'xgboost') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---- predict contract -------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_predict_shape_and_dtype(kind, fitted, data):
    model = fitted(kind)
    _, _, X_test, _ = data
    for X in (X_test, pd.DataFrame(X_test), X_test[:1], X_test.astype(np.float32)):
        pred = model.predict(X)
        assert isinstance(pred, np.ndarray)
        assert pred.dtype == np.float64 and pred.shape == (len(X),)
        assert np.isfinite(pred).all()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_predict_last_matches_full_history(kind, fitted, data):
    model = fitted(kind)
    _, _, X_test, _ = data
    full = model.predict(X_test)[-1]
    assert np.isclose(model.predict_last(X_test), full, rtol=1e-6, atol=1e-9)
    # Only the last context_rows rows matter for the newest prediction.
    assert np.isclose(model.predict_last(X_test[-model.context_rows :]), full, rtol=1e-6, atol=1e-9)
    # Shorter histories than the context are padded the same way by both paths.
    short = X_test[:3]
    assert np.isclose(model.predict_last(short), model.predict(short)[-1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_predictions_only_use_past_rows(kind, fitted, data):
    model = fitted(kind)
    _, _, X_test, _ = data
    changed = X_test.copy()
    changed[150:] += 3.0
    assert_same(kind, model.predict(X_test)[:150], model.predict(changed)[:150])
    assert not np.allclose(model.predict(X_test)[150:], model.predict(changed)[150:])


def test_lstm_window_is_bounded_by_lookback(fitted, data):
    model = fitted("lstm")
    _, _, X_test, _ = data
    assert model.context_rows == model.lookback
    changed = X_test.copy()
    changed[:100] += 3.0  # rows older than the window of row 100 + lookback
    start = 100 + model.lookback - 1
    np.testing.assert_allclose(model.predict(changed)[start:], model.predict(X_test)[start:], atol=1e-6)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_not_fitted_raises(kind, data):
    model = get_model_class(kind).quick()
    X, _, _, _ = data
    with pytest.raises(NotFittedError):
        model.predict(X)
    with pytest.raises(NotFittedError):
        model.predict_last(X)
    with pytest.raises(NotFittedError):
        model.save("/nonexistent-never-written")
    assert issubclass(NotFittedError, ValueError)  # what scikit-learn callers catch


BAD_FIT = {
    "nan_in_X": lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y),
    "inf_in_y": lambda X, y: (X, np.r_[y[:-1], np.inf]),
    "1d_X": lambda X, y: (X[:, 0], y),
    "length_mismatch": lambda X, y: (X, y[:-5]),
    "2d_y": lambda X, y: (X, np.c_[y, y]),
    "empty_X": lambda X, y: (X[:0], y[:0]),
    "text_X": lambda X, y: (np.full(X.shape, "a"), y),
}


@pytest.mark.parametrize("case", list(BAD_FIT))
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_bad_fit_input_is_invalid_input(kind, case, data):
    X, y, _, _ = data
    bad_X, bad_y = BAD_FIT[case](X, y)
    with pytest.raises(InvalidInput):
        get_model_class(kind).quick().fit(bad_X, bad_y)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_bad_predict_input_is_invalid_input(kind, fitted, data):
    model = fitted(kind)
    _, _, X_test, _ = data
    nan_row = X_test.copy()
    nan_row[3, 2] = np.nan
    for bad in (X_test[:, :-1], X_test[:, 0], nan_row, X_test[:0]):
        with pytest.raises(InvalidInput):
            model.predict(bad)


def test_reordered_columns_are_refused(data):
    X, y, X_test, _ = data
    columns = [f"f{i}" for i in range(N_FEATURES)]
    model = LinearModel().fit(pd.DataFrame(X, columns=columns), y)
    model.predict(pd.DataFrame(X_test, columns=columns))
    with pytest.raises(InvalidInput):
        model.predict(pd.DataFrame(X_test, columns=columns[::-1]))


# ---- persistence ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_save_load_round_trip(kind, fitted, data, tmp_path):
    model = fitted(kind)
    _, _, X_test, _ = data
    files = model.save(tmp_path / kind)
    on_disk = sorted(str(p.relative_to(tmp_path / kind)) for p in (tmp_path / kind).rglob("*") if p.is_file())
    assert sorted(files) == on_disk
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib"))]

    loaded = get_model_class(kind).load(tmp_path / kind)
    assert type(loaded) is type(model) and loaded.n_features_in_ == N_FEATURES
    assert_same(kind, loaded.predict(X_test), model.predict(X_test))
    assert np.isclose(loaded.predict_last(X_test), model.predict_last(X_test), rtol=1e-6, atol=1e-9)
    assert type(load_model(tmp_path / kind)) is type(model)


def test_load_refuses_wrong_kind_and_missing_dir(fitted, tmp_path):
    fitted("linear").save(tmp_path / "linear")
    with pytest.raises(BundleIntegrityError):
        XGBoostModel.load(tmp_path / "linear")
    with pytest.raises(ModelNotFound):
        load_model(tmp_path / "nothing-here")


# ---- parameters, determinism, skill ---------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_params_are_stored_unchanged_and_clone_unfitted(kind, fitted):
    cls = get_model_class(kind)
    model = cls.quick()
    for name, value in cls.QUICK_PARAMS.items():
        assert model.get_params()[name] == value
    copy = clone(fitted(kind))
    assert copy.get_params().keys() == model.get_params().keys()
    with pytest.raises(NotFittedError):
        copy.predict(np.zeros((2, N_FEATURES)))


@pytest.mark.parametrize("kind", SEEDED_KINDS)
def test_same_seed_same_predictions(kind, data):
    X, y, X_test, _ = data
    cls = get_model_class(kind)
    a = cls.quick().fit(X, y).predict(X_test)
    b = cls.quick().fit(X, y).predict(X_test)
    assert np.array_equal(a, b)
    if kind != "linear":  # the seed really drives the sampling
        c = cls.quick(seed=1).fit(X, y).predict(X_test)
        assert not np.array_equal(a, c)


# Out-of-sample MSE as a fraction of the MSE of always predicting 0 (the naive return).
SKILL_BOUND = {"linear": 0.8, "random_forest": 0.8, "xgboost": 0.8, "lstm": 1.0, "ensemble": 0.8}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_learns_signal_better_than_zero(kind, fitted, data):
    _, _, X_test, y_test = data
    mse = np.mean((fitted(kind).predict(X_test) - y_test) ** 2)
    assert mse < SKILL_BOUND[kind] * np.mean(y_test**2)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_fits_a_slice_of_real_candles(kind, real_features):
    X, y = real_features
    split = int(len(X) * 0.8)
    model = get_model_class(kind).quick().fit(X[:split], y[:split])
    pred = model.predict(X[split:])
    assert pred.shape == (len(X) - split,) and np.isfinite(pred).all()
    # Hourly returns are mostly noise: a sane model stays on their scale.
    assert np.std(pred) < 3 * np.std(y)
    assert abs(np.mean(pred)) < 3 * np.std(y)


# ---- ensemble ----------------------------------------------------------------------


def test_inverse_mse_weights_on_constructed_errors():
    y = np.zeros(4)
    predictions = np.column_stack([np.ones(4), np.full(4, np.sqrt(2.0))])  # MSE 1 and 2
    np.testing.assert_allclose(inverse_mse_weights(y, predictions), [2 / 3, 1 / 3])
    with pytest.raises(InvalidInput):
        inverse_mse_weights(y, predictions[:3])


def test_fitted_ensemble_weights_are_a_convex_combination(fitted, data):
    model = fitted("ensemble")
    _, _, X_test, _ = data
    w = model.weights_
    assert len(w) == len(model.members_) == len(model.members)
    assert (w >= 0).all() and np.isclose(w.sum(), 1.0)
    manual = sum(wi * m.predict(X_test) for wi, m in zip(w, model.members_))
    np.testing.assert_allclose(model.predict(X_test), manual, rtol=1e-12)


def test_ensemble_favours_the_better_member(data):
    X, y, _, _ = data
    # A linear signal: ridge nails it, a single depth-1 stump barely moves.
    y_linear = 0.01 * (X[:, 0] - 0.5 * X[:, 1])
    weak = {"n_estimators": 1, "max_depth": 1, "learning_rate": 0.1}
    model = EnsembleModel(members=("linear", "xgboost"), member_params={"xgboost": weak}, gap=10).fit(X, y_linear)
    weights = model.member_weights()
    assert min(weights.values()) >= 0 and np.isclose(sum(weights.values()), 1.0)
    assert weights["linear"] > 0.9 > weights["xgboost"]
    assert model.validation_mse_["linear"] < model.validation_mse_["xgboost"]


def test_chronological_split_leaves_the_gap():
    assert chronological_split(100, 0.2, gap=5) == (75, 80)
    assert chronological_split(100, 0.2) == (80, 80)
    with pytest.raises(InvalidInput):
        chronological_split(10, 0.5, gap=10)


def test_ensemble_gap_reaches_members_that_take_one():
    model = EnsembleModel(gap=24)
    assert model._new_member("lstm").gap == 24
    assert EnsembleModel(gap=24, member_params={"lstm": {"gap": 3}})._new_member("lstm").gap == 3


def test_ensemble_from_fitted_members(fitted, data, tmp_path):
    _, _, X_test, _ = data
    linear, xgb = fitted("linear"), fitted("xgboost")
    model = EnsembleModel.from_fitted({"linear": linear, "xgboost": xgb}, [3.0, 1.0])
    np.testing.assert_allclose(model.weights_, [0.75, 0.25])
    expected = 0.75 * linear.predict(X_test) + 0.25 * xgb.predict(X_test)
    np.testing.assert_allclose(model.predict(X_test), expected, rtol=1e-12)
    model.save(tmp_path / "ens")
    assert np.array_equal(load_model(tmp_path / "ens").predict(X_test), model.predict(X_test))

    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0], [np.nan, 1.0]):
        with pytest.raises(InvalidInput):
            EnsembleModel.from_fitted([linear, xgb], bad)
    with pytest.raises(NotFittedError):
        EnsembleModel.from_fitted([linear, XGBoostModel()], [0.5, 0.5])
    with pytest.raises(InvalidInput):
        EnsembleModel.from_fitted([linear, linear], [0.5, 0.5])
