"""The skill gate: a model without skill is shrunk to "no change"; one with skill keeps its weight."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crypto_predictor.errors import InvalidInput
from crypto_predictor.models.linear import LinearModel
from crypto_predictor.training.skill_gate import MIN_INDEPENDENT, T_MIN, T_RECENT, gated_predictions, shrink_factor
from crypto_predictor.training.walk_forward import backtest

N, HORIZON, FOLDS = 4000, 1, 4


def _series(signal: float, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Five features; the target is ``signal`` times the first one plus unit noise."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2021-01-01", periods=N, freq="1h", tz="UTC")
    X = pd.DataFrame(rng.normal(size=(N, 5)), index=index, columns=[f"f{i}" for i in range(5)])
    y = pd.Series(signal * X["f0"].to_numpy() + rng.normal(size=N) * 0.01, index=index)
    return X, y


def _gated(signal: float, seed: int = 0):
    X, y = _series(signal, seed)
    bt = backtest(LinearModel, X, y, HORIZON, FOLDS, min_train=N // 2)
    p = bt.predictions
    served, per_fold = gated_predictions(p["y_true"], p["y_pred"], p["position"], p["fold"], HORIZON)
    y_true = p["y_true"].to_numpy()
    mase = np.abs(y_true - served).mean() / np.abs(y_true).mean()
    model_mase = np.abs(y_true - p["y_pred"].to_numpy()).mean() / np.abs(y_true).mean()
    return mase, model_mase, per_fold, p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_signal_shrinks_to_naive(seed):
    mase, model_mase, per_fold, p = _gated(0.0, seed)
    assert np.abs(p["y_pred"]).max() > 0 and model_mase != 1.0  # the model does forecast something
    assert [f["shrink"] for f in per_fold] == [0.0] * FOLDS
    assert mase == pytest.approx(1.0, abs=1e-12) and mase <= 1.0


def test_planted_signal_keeps_the_model():
    mase, model_mase, per_fold, p = _gated(0.008)
    assert per_fold[0]["shrink"] == 0.0 and per_fold[0]["n_known"] == 0  # fold 0: nothing known yet
    assert all(f["shrink"] >= 0.8 and f["t"] >= T_MIN for f in per_fold[1:])
    assert model_mase < 0.9 and mase < 1.0
    k, t = shrink_factor(p["y_true"], p["y_pred"], HORIZON)
    assert k >= 0.8 and t >= T_MIN


def test_folds_only_learn_from_errors_realised_before_them():
    X, y = _series(0.004)
    bt = backtest(LinearModel, X, y, HORIZON, FOLDS, min_train=N // 2)
    p = bt.predictions
    _, per_fold = gated_predictions(p["y_true"], p["y_pred"], p["position"], p["fold"], HORIZON)
    # Scrambling fold 3's targets changes nothing learned for folds 0..3.
    scrambled = p["y_true"].to_numpy().copy()
    last = (p["fold"] == FOLDS - 1).to_numpy()
    scrambled[last] = -scrambled[last] * 50
    _, again = gated_predictions(scrambled, p["y_pred"], p["position"], p["fold"], HORIZON)
    assert again == per_fold


def test_an_edge_that_faded_is_not_served():
    # A strong edge in the older half of the known rows and none in the newer half: overall t is far
    # above T_MIN, but the newer half does not show it, so naive is served.
    rng = np.random.default_rng(4)
    x = rng.normal(size=4000)
    signal = np.where(np.arange(4000) < 2000, 0.5, 0.0)
    y = signal * x + rng.normal(size=4000) * 0.3
    k, t = shrink_factor(y, 0.5 * x, 1)
    assert t >= T_MIN and k == 0.0
    y_lasting = 0.5 * x + rng.normal(size=4000) * 0.3
    k, t = shrink_factor(y_lasting, 0.5 * x, 1)
    assert t >= T_MIN and k >= 0.8


def test_a_weak_edge_below_the_threshold_is_not_served():
    rng = np.random.default_rng(5)
    x = rng.normal(size=3000)
    y = 0.02 * x + rng.normal(size=3000)  # some gain in MAE, t well under T_MIN
    k, t = shrink_factor(y, x, 1)
    assert k == 0.0 and t < T_MIN and T_RECENT < T_MIN


def test_overlapping_targets_count_as_fewer_independent_rows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=24 * (2 * MIN_INDEPENDENT - 1))
    y = 0.5 * x + rng.normal(size=len(x)) * 0.01  # skill, but 59 non-overlapping 24 h targets: under 30 a half
    assert shrink_factor(y, x, 1)[0] > 0
    assert shrink_factor(y, x, 24) == (0.0, 0.0)


def test_bad_input_is_refused():
    with pytest.raises(InvalidInput, match="rows"):
        shrink_factor([0.1, 0.2], [0.1], 1)
    with pytest.raises(InvalidInput, match="finite"):
        shrink_factor([0.1, np.nan], [0.1, 0.2], 1)
