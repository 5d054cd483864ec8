"""Shared plumbing of the two xgboost-backed kinds (gradient boosting, random forest).

Training goes through ``xgboost.train`` on a ``QuantileDMatrix`` (hist method,
a few threads); prediction through ``Booster.inplace_predict`` with one thread,
which skips DMatrix construction and costs a fraction of a millisecond for
one row. The booster is saved with ``save_model`` as xgboost JSON: no pickle.
xgboost itself is imported on first use so that importing the models package
stays cheap for code that only needs the kind names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crypto_predictor.models.base import BaseModel

BOOSTER_FILE = "booster.json"


def _xgboost():
    import xgboost

    return xgboost


class BoosterModel(BaseModel):
    """A kind whose fitted state is one xgboost Booster in ``booster_``."""

    def _train_config(self) -> tuple[dict, int]:
        """(xgboost training parameters, number of boosting rounds)."""
        raise NotImplementedError

    def _fit(self, X, y):
        xgb = _xgboost()
        params, rounds = self._train_config()
        params = {"objective": "reg:squarederror", "tree_method": "hist", "verbosity": 0, **params}
        dtrain = xgb.QuantileDMatrix(X, label=y, nthread=params.get("nthread", 1))
        booster = xgb.train(params, dtrain, num_boost_round=rounds)
        self.booster_ = self._for_serving(booster)

    @staticmethod
    def _for_serving(booster):
        # One thread: for the row counts we predict, thread start-up costs more than it saves.
        booster.set_param({"nthread": 1})
        return booster

    def _predict(self, X):
        return self.booster_.inplace_predict(np.ascontiguousarray(X), predict_type="value")

    def _save(self, directory: Path):
        self.booster_.save_model(str(directory / BOOSTER_FILE))
        return [BOOSTER_FILE]

    def _load(self, directory: Path, meta):
        booster = _xgboost().Booster()
        booster.load_model(str(directory / BOOSTER_FILE))
        self.booster_ = self._for_serving(booster)
