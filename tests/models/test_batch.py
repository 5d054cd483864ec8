"""A batch of many assets' predictions shares one call per global model and equals single predictions bit for bit."""

from __future__ import annotations

import numpy as np

from crypto_predictor.models import EnsembleModel, LinearModel, RandomForestModel, XGBoostModel
from crypto_predictor.models.batch import predict_each


def _fitted():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(800, 37))
    y = X[:, 0] * 0.3 - np.tanh(X[:, 1]) + 0.2 * rng.normal(size=800)
    return [LinearModel(alpha=1.0).fit(X, y), XGBoostModel(n_estimators=30, max_depth=4, n_jobs=1).fit(X, y),
            RandomForestModel(n_estimators=20, max_depth=5, n_jobs=1).fit(X, y)]


def test_shared_members_are_called_once_and_every_result_equals_predict_last(monkeypatch):
    linear, xgb, forest = _fitted()
    assert xgb.trees_ is not None and forest.trees_ is not None  # the numpy trees serving uses
    rng = np.random.default_rng(5)
    # 40 assets' ensembles over the same three member objects, each with its own weights, and plain models
    models = [EnsembleModel.from_fitted([linear, xgb, forest], rng.uniform(0.1, 1.0, 3)) for _ in range(40)]
    models += [linear, xgb, forest]
    inputs = [rng.normal(size=(1, 37)) for _ in models]
    inputs[7] = rng.normal(size=(4, 37))  # only the newest row counts
    calls = {}
    for cls in (LinearModel, XGBoostModel, RandomForestModel):
        real = cls._predict_rows

        def spy(self, X, real=real, cls=cls):
            calls[cls.kind] = calls.get(cls.kind, 0) + 1
            return real(self, X)

        monkeypatch.setattr(cls, "_predict_rows", spy)
    got = predict_each(models, inputs)
    assert calls == {"linear": 1, "xgboost": 1, "random_forest": 1}
    monkeypatch.undo()
    assert got == [float(m.predict_last(x)) for m, x in zip(models, inputs)]  # exactly, not approximately


def test_a_linear_model_row_does_not_depend_on_the_rows_beside_it():
    linear = _fitted()[0]
    X = np.random.default_rng(6).normal(size=(174, 37))
    batch = linear._predict_rows(X)
    assert batch.tolist() == [linear.predict_last(X[i:i + 1]) for i in range(len(X))]
