"""Feature contributions: exact TreeSHAP in numpy equals xgboost's own, and every explanation adds up."""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pytest
import xgboost

from crypto_predictor.models import EnsembleModel, LinearModel, RandomForestModel, XGBoostModel
from crypto_predictor.models.contributions import contributions
from crypto_predictor.models.tree_shap import TreeShap


def _data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 3] = np.round(X[:, 3])  # ties and repeated splits on one feature
    y = 0.5 * X[:, 0] + np.sin(X[:, 1]) + 0.3 * X[:, 2] * X[:, 3] + 0.3 * rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("kind", [XGBoostModel(n_estimators=40, max_depth=4, n_jobs=1),
                                  RandomForestModel(n_estimators=30, max_depth=6, n_jobs=1)])
def test_tree_contributions_equal_xgboosts_pred_contribs(kind):
    X, y = _data()
    model = kind.fit(X, y)
    rows = np.random.default_rng(1).normal(size=(6, X.shape[1]))
    rows[0, 2] = np.nan  # a missing value follows each split's default branch
    expected = model.booster_.predict(xgboost.DMatrix(rows), pred_contribs=True)
    for row, want in zip(rows, expected):
        part = contributions(model, row[None])
        np.testing.assert_allclose(part.values, want[:-1], atol=2e-6)
        assert part.bias == pytest.approx(want[-1], abs=1e-6)
        assert part.bias + part.values.sum() == pytest.approx(model.trees_.predict_row(row), abs=1e-5)


def _shapley(value, n):
    """Shapley values by enumerating every coalition of n players."""
    out = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            for subset in combinations(others, size):
                out[i] += weight * (value(set(subset) | {i}) - value(set(subset)))
    return out


def test_tree_shap_matches_brute_force_shapley_of_the_path_dependent_game():
    # One tree: x0 < 0 ? (x1 < 1 ? 1 : 2) : (x0 < 2 ? 3 : 4), covers 10 | 6 (2, 4) | 4 (3, 1).
    tree = {"left_children": [1, 3, 5, -1, -1, -1, -1], "right_children": [2, 4, 6, -1, -1, -1, -1],
            "split_indices": [0, 1, 0, 0, 0, 0, 0], "split_conditions": [0.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0],
            "default_left": [1, 1, 1, 0, 0, 0, 0], "sum_hessian": [10, 6, 4, 2, 4, 3, 1]}
    raw = {"learner": {"learner_model_param": {"base_score": "[5E-1]", "num_feature": "3"},
                       "gradient_booster": {"model": {"trees": [tree]}}}}
    shap = TreeShap(raw)
    x = np.array([1.5, 0.5, 9.0])

    def expected(node, known):  # E[f | features in ``known`` fixed to x], following covers elsewhere
        if tree["left_children"][node] < 0:
            return tree["split_conditions"][node]
        f, left, right = tree["split_indices"][node], tree["left_children"][node], tree["right_children"][node]
        if f in known:
            return expected(left if x[f] < tree["split_conditions"][node] else right, known)
        c = tree["sum_hessian"]
        return (c[left] * expected(left, known) + c[right] * expected(right, known)) / c[node]

    bias, values = shap.contributions(x)
    np.testing.assert_allclose(values, _shapley(lambda known: expected(0, known), 3), atol=1e-12)
    assert bias == pytest.approx(0.5 + expected(0, set()))
    assert values[2] == 0.0  # a feature no split uses gets nothing


def test_linear_contributions_are_coefficient_times_standardised_value():
    X, y = _data()
    model = LinearModel(alpha=1.0).fit(X, y)
    part = contributions(model, X[-1:])
    np.testing.assert_allclose(part.values, model.coef_ * (X[-1] - model.mean_) / model.scale_)
    assert part.bias + part.values.sum() == pytest.approx(model.predict_last(X[-1:]))


def test_ensemble_contributions_add_up_and_a_loaded_model_never_builds_xgboost(tmp_path):
    X, y = _data()
    ensemble = EnsembleModel.quick(members=("linear", "random_forest", "xgboost")).fit(X, y)
    ensemble.save(tmp_path / "ensemble")
    loaded = EnsembleModel.load(tmp_path / "ensemble")
    part = contributions(loaded, X[-5:])
    assert part.omitted == ()
    assert part.bias + part.values.sum() == pytest.approx(loaded.predict_last(X[-5:]), abs=1e-6)
    weighted = sum(w * contributions(m, X[-1:]).values for m, w in zip(ensemble.members_, ensemble.weights_))
    np.testing.assert_allclose(part.values, weighted, atol=1e-9)
    assert all(m._booster is None for m in loaded.members_ if hasattr(m, "trees_"))  # JSON only


def test_a_malformed_booster_is_refused():
    from crypto_predictor.errors import BundleIntegrityError

    with pytest.raises(BundleIntegrityError):
        TreeShap(b'{"learner": {"gradient_booster": {}}}')
