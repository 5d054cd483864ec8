"""Gradient-boosted trees (xgboost, hist method)."""

from __future__ import annotations

from crypto_predictor.models._booster import BoosterModel


class XGBoostModel(BoosterModel):
    kind = "xgboost"
    QUICK_PARAMS = {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.3}

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 4,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 20.0,
        reg_lambda: float = 1.0,
        n_jobs: int = 2,
        seed: int = 0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.seed = seed

    def _train_config(self):
        params = {
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "nthread": self.n_jobs,
            "seed": self.seed,
        }
        return params, self.n_estimators
