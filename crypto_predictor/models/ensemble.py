"""Weighted average of member models, weights learned on a chronological tail.

Weighting: inverse mean squared error on the validation tail, normalised to sum
to 1 (Bates & Granger's combination without covariances). Chosen over
non-negative least squares stacking because (a) the members' return forecasts
are highly correlated and tiny next to the noise, so estimated optimal weights
are unstable from one window to the next, and the "forecast combination
puzzle" literature finds simple inverse-error weights hold up better out of
sample; (b) NNLS weights do not sum to 1 and normalising them afterwards
undoes what the least squares fitted; (c) every member keeps some weight, so a
member that was merely unlucky on one tail is not dropped outright. When all
members are about as good as each other (hourly returns: every member's MSE
is within a percent of the naive forecast's) the weights come out nearly
equal, which is the intended, shrinkage-like behaviour.

Fit: members are trained on ``[:fit_end]``, scored on the last
``validation_fraction`` of rows (``gap`` rows in between, so targets that look
``gap`` rows ahead cannot leak validation prices into the fit part), then, with
``refit=True``, refitted on all rows. Members that take a ``gap`` parameter of
their own (the LSTM's early stopping) inherit the ensemble's unless
``member_params`` sets it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import clone

from crypto_predictor.errors import BundleIntegrityError, InvalidInput
from crypto_predictor.models.base import BaseModel, chronological_split, load_shared
from crypto_predictor.models.kinds import SINGLE_KINDS, lookup

DEFAULT_MEMBERS = ("linear", "random_forest", "xgboost", "lstm")


def inverse_mse_weights(y_true, predictions) -> np.ndarray:
    """Weights proportional to 1 / MSE of each column of ``predictions`` (n_rows x n_members)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape[0] != len(y_true) or len(y_true) == 0:
        raise InvalidInput(f"predictions must be (rows, members) matching y; got {predictions.shape} for {len(y_true)}")
    if not (np.isfinite(predictions).all() and np.isfinite(y_true).all()):
        raise InvalidInput("cannot weight members on NaN or infinite predictions")
    mse = ((predictions - y_true[:, None]) ** 2).mean(axis=0)
    # The floor keeps a perfect member from dividing by zero (it then takes ~all weight).
    inverse = 1.0 / np.maximum(mse, 1e-300)
    return inverse / inverse.sum()


def _kind_class(name):
    return lookup(SINGLE_KINDS, name)


class EnsembleModel(BaseModel):
    kind = "ensemble"
    MIN_FIT_ROWS = 20

    def __init__(
        self,
        members=DEFAULT_MEMBERS,
        member_params: dict | None = None,
        validation_fraction: float = 0.2,
        gap: int = 0,
        refit: bool = True,
    ):
        self.members = members
        self.member_params = member_params
        self.validation_fraction = validation_fraction
        self.gap = gap
        self.refit = refit

    @classmethod
    def quick(cls, **overrides):
        members = overrides.get("members", DEFAULT_MEMBERS)
        params = {name: dict(_kind_class(name).QUICK_PARAMS) for name in members}
        return cls(**{"member_params": params, **overrides})

    @property
    def context_rows(self) -> int:
        if hasattr(self, "members_"):
            return max(m.context_rows for m in self.members_)
        return max(self._new_member(name).context_rows for name in self._member_names())

    def _member_names(self) -> list[str]:
        names = [self.members] if isinstance(self.members, str) else list(self.members)
        if not names:
            raise InvalidInput("an ensemble needs at least one member")
        if len(set(names)) != len(names):
            raise InvalidInput(f"ensemble members must be distinct kinds, got {names}")
        if self.kind in names:
            raise InvalidInput("an ensemble cannot contain an ensemble")
        unknown = set(self.member_params or {}) - set(names)
        if unknown:
            raise InvalidInput(f"member_params for kinds not in members: {sorted(unknown)}")
        return names

    def _new_member(self, name: str) -> BaseModel:
        cls = _kind_class(name)
        params = dict((self.member_params or {}).get(name, {}))
        if "gap" in cls().get_params() and "gap" not in params:
            params["gap"] = self.gap
        return cls(**params)

    def _fit(self, X, y):
        names = self._member_names()
        fit_end, val_start = chronological_split(len(X), self.validation_fraction, self.gap)
        members = [self._new_member(name).fit(X[:fit_end], y[:fit_end]) for name in names]
        # Each member sees the rows before the tail it needs as context (the LSTM's window).
        columns = []
        for member in members:
            start = max(0, val_start - member.context_rows + 1)
            columns.append(member.predict(X[start:])[val_start - start :])
        predictions = np.column_stack(columns)
        y_val = y[val_start:]
        self.weights_ = inverse_mse_weights(y_val, predictions)
        self.validation_mse_ = {n: float(v) for n, v in zip(names, ((predictions - y_val[:, None]) ** 2).mean(axis=0))}
        if self.refit:
            members = [clone(m).fit(X, y) for m in members]
        self.members_ = members

    @classmethod
    def from_fitted(cls, members, weights, **params) -> "EnsembleModel":
        """An ensemble of already fitted members (list, or dict kind -> model) and given weights."""
        members = list(members.values()) if isinstance(members, dict) else list(members)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(weights) != len(members):
            raise InvalidInput(f"{len(members)} members but {len(weights)} weights")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise InvalidInput(f"weights must be finite, non-negative and not all zero, got {weights.tolist()}")
        for m in members:
            m.check_fitted()
        widths = {m.n_features_in_ for m in members}
        if len(widths) != 1:
            raise InvalidInput(f"members were fitted on different feature counts: {sorted(widths)}")
        ensemble = cls(
            members=tuple(m.kind for m in members),
            member_params={m.kind: m.get_params(deep=False) for m in members},
            **params,
        )
        ensemble._member_names()  # same checks as fit: distinct kinds, no nesting
        ensemble.members_ = members
        ensemble.weights_ = weights / weights.sum()
        ensemble.validation_mse_ = {}
        ensemble.n_features_in_ = widths.pop()
        # Column names are kept only when every member agrees on them.
        names = {tuple(m.feature_names_in_ or ()) for m in members}
        only = names.pop() if len(names) == 1 else ()
        ensemble.feature_names_in_ = list(only) or None
        return ensemble

    def member_weights(self) -> dict[str, float]:
        self.check_fitted()
        return {m.kind: float(w) for m, w in zip(self.members_, self.weights_)}

    def _predict(self, X):
        return sum(w * m.predict(X) for m, w in zip(self.members_, self.weights_))

    def _predict_last(self, X):
        # X was checked once by predict_last, and every member's width was checked against the
        # ensemble's when it was fitted, assembled or loaded: members skip their own checks here.
        members = zip(self.members_, self.weights_)
        return float(sum(w * m._predict_last(X[-m.context_rows :]) for m, w in members))

    def _save(self, directory: Path):
        files = []
        for member in self.members_:
            files += [f"{member.kind}/{name}" for name in member.save(directory / member.kind)]
        return files

    def _meta(self):
        return {
            "members": [m.kind for m in self.members_],
            "weights": [float(w) for w in self.weights_],
            "validation_mse": self.validation_mse_,
        }

    def _load(self, directory: Path, meta):
        self.members_ = [load_shared(_kind_class(name), directory / name) for name in meta["members"]]
        widths = {m.kind: m.n_features_in_ for m in self.members_ if m.n_features_in_ != self.n_features_in_}
        if widths:
            raise BundleIntegrityError(f"{directory}: members fitted on other feature counts than "
                                       f"the ensemble's {self.n_features_in_}: {widths}")
        self.weights_ = np.asarray(meta["weights"], dtype=np.float64)
        self.validation_mse_ = dict(meta.get("validation_mse", {}))
