"""Ridge regression on standardised features, in closed form.

Closed form instead of ``sklearn.linear_model.Ridge`` because the whole fitted
state is four arrays that save as a plain ``.npz`` (no pickle) and predict in
microseconds. The standardisation statistics come from the rows given to
``fit`` only, never from the rows being predicted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crypto_predictor.errors import InvalidInput
from crypto_predictor.models.base import BaseModel

STATE_FILE = "linear.npz"


class LinearModel(BaseModel):
    kind = "linear"
    QUICK_PARAMS = {"alpha": 1.0}

    def __init__(self, alpha: float = 10.0):
        self.alpha = alpha

    def _fit(self, X, y):
        if not self.alpha >= 0:
            raise InvalidInput(f"alpha must be >= 0, got {self.alpha}")
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        # A constant column carries no information; scale 1 keeps it harmless.
        scale[scale == 0] = 1.0
        Z = (X - mean) / scale
        y_mean = float(y.mean())
        gram = Z.T @ Z + self.alpha * np.eye(Z.shape[1])
        # lstsq copes with a singular system when alpha == 0 and columns are collinear.
        coef = np.linalg.lstsq(gram, Z.T @ (y - y_mean), rcond=None)[0]
        self.mean_, self.scale_, self.coef_, self.intercept_ = mean, scale, coef, y_mean

    def _predict(self, X):
        return ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def _predict_rows(self, X):
        # einsum reduces each row on its own; matmul's result for a row depends on how many rows come with
        # it, and a batch must equal single predictions exactly.
        return np.einsum("ij,j->i", (X - self.mean_) / self.scale_, self.coef_) + self.intercept_

    def _predict_last(self, X):
        return float(self._predict_rows(X[-1:])[0])

    def _save(self, directory: Path):
        np.savez(directory / STATE_FILE, mean=self.mean_, scale=self.scale_, coef=self.coef_,
                 intercept=np.float64(self.intercept_))
        return [STATE_FILE]

    def _load(self, directory: Path, meta):
        with np.load(directory / STATE_FILE, allow_pickle=False) as state:
            self.mean_ = state["mean"]
            self.scale_ = state["scale"]
            self.coef_ = state["coef"]
            self.intercept_ = float(state["intercept"])
