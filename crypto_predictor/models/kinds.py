"""The kinds an ensemble can combine, by name: every single model kind (not the ensemble itself)."""

from __future__ import annotations

from crypto_predictor.errors import UnknownModelKind
from crypto_predictor.models.base import BaseModel
from crypto_predictor.models.linear import LinearModel
from crypto_predictor.models.lstm import LSTMModel
from crypto_predictor.models.random_forest import RandomForestModel
from crypto_predictor.models.xgboost_model import XGBoostModel

SINGLE_KINDS: dict[str, type[BaseModel]] = {
    "linear": LinearModel,
    "random_forest": RandomForestModel,
    "xgboost": XGBoostModel,
    "lstm": LSTMModel,
}


def lookup(kinds: dict, name) -> type[BaseModel]:
    """``kinds[name]``, or UnknownModelKind listing the valid names."""
    try:
        return kinds[name]
    except (KeyError, TypeError):
        raise UnknownModelKind(
            f"unknown model kind {name!r}; valid kinds: {', '.join(kinds)}", valid=list(kinds)
        ) from None
