"""Model kinds and the plain dict that names them.

Importing this package does not import TensorFlow (only building or loading an
LSTM does) nor xgboost (only fitting or loading a tree model does).
"""

from __future__ import annotations

from crypto_predictor.models.base import BaseModel, load_shared, read_meta, shared_loads
from crypto_predictor.models.ensemble import EnsembleModel, inverse_mse_weights
from crypto_predictor.models.kinds import SINGLE_KINDS, lookup
from crypto_predictor.models.linear import LinearModel
from crypto_predictor.models.lstm import LSTMModel
from crypto_predictor.models.random_forest import RandomForestModel
from crypto_predictor.models.xgboost_model import XGBoostModel

KINDS: dict[str, type[BaseModel]] = {**SINGLE_KINDS, "ensemble": EnsembleModel}


def get_model_class(name) -> type[BaseModel]:
    return lookup(KINDS, name)


def load_model(directory) -> BaseModel:
    """Load whatever kind of model ``save`` wrote into ``directory``."""
    return load_shared(get_model_class(read_meta(directory)["kind"]), directory)


__all__ = [
    "KINDS",
    "BaseModel",
    "EnsembleModel",
    "LSTMModel",
    "LinearModel",
    "RandomForestModel",
    "XGBoostModel",
    "get_model_class",
    "inverse_mse_weights",
    "load_model",
    "shared_loads",
]
