"""Shared plumbing of the two xgboost-backed kinds (gradient boosting, random forest).

Training goes through ``xgboost.train`` on a ``QuantileDMatrix`` (hist method,
a few threads). The booster is saved with ``save_model`` as xgboost JSON: no pickle.

Prediction: ``Booster.inplace_predict`` spends ~0.18 ms on one row (~0.07 ms in the
C call, the rest in its Python wrapping), nearly all per-call overhead. So the same
JSON is also read into ``tree_numpy.NumpyTrees`` (``trees_``), which evaluates one
row in ~0.02-0.03 ms with bit-identical results. It serves ``predict_last`` and
small ``predict`` calls always, and every call of a loaded model: a loaded model
keeps the booster's JSON and builds the xgboost ``Booster`` only when something
asks for ``booster_`` (feature importance), so serving workers never import or
load xgboost. A model fitted in this process predicts long batches (evaluation,
ensemble validation) with xgboost's compiled loop, ~2-3x faster there. A booster
the numpy evaluator does not reproduce (``UnsupportedModel``) is served by xgboost.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from crypto_predictor.errors import BundleIntegrityError
from crypto_predictor.models.base import BaseModel
from crypto_predictor.models.tree_numpy import NumpyTrees, UnsupportedModel

BOOSTER_FILE = "booster.json"
# Set in a process whose tasks must stay single-threaded (a Dask worker runs one fit per core): the
# most threads a fit uses whatever its n_jobs. xgboost's trees do not depend on the thread count, so
# the model is the same and its saved parameters (n_jobs) do not change.
THREAD_CAP_ENV = "CRYPTO_PREDICTOR_FIT_THREADS"
# Up to this many rows numpy beats inplace_predict (its ~0.18 ms fixed cost against
# ~4 us a row in xgboost and ~10 us a row in numpy, measured on the default models).
NUMPY_MAX_ROWS = 16


def _xgboost():
    import xgboost

    return xgboost


class BoosterModel(BaseModel):
    """A kind whose fitted state is one xgboost Booster (``booster_``) and its numpy twin (``trees_``)."""

    _booster = None  # the Booster, once fitted or built
    _booster_json = None  # a loaded model's booster.json bytes, until the Booster is built from them

    def _train_config(self) -> tuple[dict, int]:
        """(xgboost training parameters, number of boosting rounds)."""
        raise NotImplementedError

    @property
    def booster_(self):
        """The xgboost Booster; a loaded model builds it from its JSON on first use."""
        if self._booster is None:
            if self._booster_json is None:
                raise AttributeError("booster_")  # not fitted: hasattr() is False, as for any fitted state
            booster = _xgboost().Booster()
            booster.load_model(bytearray(self._booster_json))
            self._booster = self._for_serving(booster)
        return self._booster

    @booster_.setter
    def booster_(self, booster):
        self._booster, self._booster_json = self._for_serving(booster), None
        self.trees_ = _numpy_trees(booster.save_raw("json"))

    def _fit(self, X, y):
        xgb = _xgboost()
        params, rounds = self._train_config()
        params = {"objective": "reg:squarederror", "tree_method": "hist", "verbosity": 0, **params}
        cap = int(os.environ.get(THREAD_CAP_ENV) or 0)
        if cap > 0:
            params["nthread"] = min(int(params.get("nthread") or cap), cap)
        dtrain = xgb.QuantileDMatrix(X, label=y, nthread=params.get("nthread", 1))
        self.booster_ = xgb.train(params, dtrain, num_boost_round=rounds)

    @staticmethod
    def _for_serving(booster):
        # One thread: for the row counts we predict, thread start-up costs more than it saves.
        booster.set_param({"nthread": 1})
        return booster

    def _predict(self, X):
        if self.trees_ is not None and (len(X) <= NUMPY_MAX_ROWS or self._booster is None):
            return self.trees_.predict(X)
        return self.booster_.inplace_predict(np.ascontiguousarray(X), predict_type="value")

    def _predict_last(self, X):
        if self.trees_ is not None:
            return self.trees_.predict_row(X[-1])
        return float(self._predict(X[-1:])[0])

    def _predict_rows(self, X):
        if self.trees_ is not None:  # numpy trees: a row's result does not depend on the batch
            return self.trees_.predict(X)
        return super()._predict_rows(X)

    def _save(self, directory: Path):
        if self._booster_json is not None:  # loaded and never rebuilt: the file as it was read
            (directory / BOOSTER_FILE).write_bytes(self._booster_json)
        else:
            self.booster_.save_model(str(directory / BOOSTER_FILE))
        return [BOOSTER_FILE]

    def _load(self, directory: Path, meta):
        raw = (directory / BOOSTER_FILE).read_bytes()
        self.trees_ = _numpy_trees(raw)
        self._booster, self._booster_json = None, raw
        # Where only xgboost can serve the model, the Booster is built now rather than in a request.
        width = self.trees_.n_features if self.trees_ is not None else self.booster_.num_features()
        if width != self.n_features_in_:
            raise BundleIntegrityError(
                f"{directory / BOOSTER_FILE} was fitted on {width} features; model.json says {self.n_features_in_}")


def _numpy_trees(raw) -> NumpyTrees | None:
    """The numpy evaluator of a booster's JSON, or None where only xgboost reproduces it."""
    try:
        return NumpyTrees.from_json(raw)
    except UnsupportedModel:
        return None
