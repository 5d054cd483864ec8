"""Additive feature contributions of one prediction: bias + sum(values) == the model's prediction.

Tree kinds (both are xgboost boosters): exact TreeSHAP (``tree_shap``), read from the saved booster
JSON, so a serving worker never imports xgboost. Linear: coefficient x standardised value, around the
training mean (the SHAP value of a linear model with independent features). An ensemble adds its
members' contributions scaled by their weights; a kind with no exact additive explanation (the LSTM)
is left out, reported in ``omitted``, and its weighted prediction is carried in ``bias`` so the sum
still equals the ensemble's prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crypto_predictor.models.tree_shap import TreeShap


@dataclass(frozen=True)
class Contributions:
    bias: float  # the expected prediction (plus any omitted member's weighted prediction)
    values: np.ndarray  # one per feature, in the model's column order
    omitted: tuple = ()  # member kinds without contributions


def contributions(model, X) -> Contributions:
    """Contributions to ``model.predict_last(X)``; X holds at least the model's ``context_rows`` rows."""
    X = np.asarray(X, dtype=np.float64)
    if model.kind == "ensemble":
        bias, values, omitted = 0.0, np.zeros(X.shape[1]), []
        for member, weight in zip(model.members_, model.weights_):
            if member.kind == "lstm":
                bias += weight * float(member.predict_last(X))
                omitted.append(member.kind)
                continue
            part = contributions(member, X)
            bias, values = bias + weight * part.bias, values + weight * part.values
        return Contributions(bias, values, tuple(omitted))
    x = X[-1]
    if model.kind == "linear":
        return Contributions(float(model.intercept_), (x - model.mean_) / model.scale_ * model.coef_)
    if hasattr(model, "trees_"):  # the xgboost-backed kinds
        shap = getattr(model, "_tree_shap", None)
        if shap is None:
            raw = model._booster_json if model._booster_json is not None else model.booster_.save_raw("json")
            shap = model._tree_shap = TreeShap(bytes(raw))
        bias, values = shap.contributions(x)
        return Contributions(bias, values)
    return Contributions(float(model.predict_last(X)), np.zeros(X.shape[1]), (model.kind,))
