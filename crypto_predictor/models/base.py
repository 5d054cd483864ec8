"""The base every model kind extends: input checks, fitted-state checks, save/load.

Template method: ``fit``/``predict``/``save``/``load`` do the checks and the
bookkeeping once, here; a kind only writes ``_fit``, ``_predict``, ``_save`` and
``_load``. Hyper-parameters are ``__init__`` arguments stored unchanged and
fitted state lives in attributes ending in ``_`` (scikit-learn's contract, so
``sklearn.base.clone`` and ``get_params``/``set_params`` work).

On disk a model is a directory: ``model.json`` (kind, hyper-parameters,
feature names, small fitted metadata) plus the kind's own artifacts in safe
formats (numpy ``.npz`` without pickles, xgboost JSON, keras ``.weights.h5``).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from crypto_predictor.errors import BundleIntegrityError, InvalidInput, ModelNotFound, NotFittedError

META_FILE = "model.json"
FORMAT_VERSION = 1


def as_matrix(X, name: str = "X") -> tuple[np.ndarray, list[str] | None]:
    """X as a finite 2-D float64 array, plus its column names when it had some."""
    names = None
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        X = X.to_numpy()
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 2:
        raise InvalidInput(f"{name} must be 2-D (rows x features), got shape {arr.shape}", shape=list(arr.shape))
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInput(f"{name} is empty: shape {arr.shape}", shape=list(arr.shape))
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidInput(
            f"{name} contains NaN or infinite values (first at row {bad[0]}, column {bad[1]})",
            row=int(bad[0]),
            column=int(bad[1]),
        )
    return arr, names


def as_target(y, n_rows: int) -> np.ndarray:
    """y as a finite 1-D float64 array with one value per row of X."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"y must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise InvalidInput(f"y must be 1-D, got shape {arr.shape}", shape=list(arr.shape))
    if len(arr) != n_rows:
        raise InvalidInput(f"X has {n_rows} rows but y has {len(arr)} values", x_rows=n_rows, y_rows=len(arr))
    if not np.isfinite(arr).all():
        raise InvalidInput(f"y contains NaN or infinite values (first at row {int(np.argmax(~np.isfinite(arr)))})")
    return arr


def chronological_split(n_rows: int, fraction: float, gap: int = 0) -> tuple[int, int]:
    """(fit_end, val_start) for a tail split: fit on [:fit_end], validate on [val_start:].

    ``gap`` rows are dropped between the two parts so that targets which look
    ``gap`` rows ahead (overlapping horizons) cannot leak validation prices into
    the fit part.
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidInput(f"validation fraction must be in (0, 1), got {fraction}")
    if gap < 0:
        raise InvalidInput(f"gap must be >= 0, got {gap}")
    n_val = max(1, int(round(n_rows * fraction)))
    val_start = n_rows - n_val
    fit_end = val_start - gap
    if fit_end < 2:
        raise InvalidInput(
            f"{n_rows} rows are too few for a validation tail of {n_val} rows after a gap of {gap}",
            rows=n_rows,
            validation_rows=n_val,
            gap=gap,
        )
    return fit_end, val_start


class BaseModel(RegressorMixin, BaseEstimator):
    """Regressor of log returns from a feature matrix whose rows are in time order."""

    kind: ClassVar[str] = ""
    # Tiny settings for tests and smoke runs; ``quick()`` builds a model with them.
    QUICK_PARAMS: ClassVar[dict] = {}
    MIN_FIT_ROWS: ClassVar[int] = 2

    # ---- hooks a kind implements -------------------------------------------------
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict_last(self, X: np.ndarray) -> float:
        """Prediction for the last row; X holds at most ``context_rows`` rows."""
        return float(self._predict(X)[-1])

    def _predict_rows(self, X: np.ndarray) -> np.ndarray:
        """For a kind of ``context_rows`` 1: each row's ``_predict_last`` as if alone, bit for bit, in as
        few calls as the kind can (a batch of many assets shares one call of a global model)."""
        return np.array([self._predict_last(X[i:i + 1]) for i in range(len(X))], dtype=np.float64)

    def _save(self, directory: Path) -> list[str]:
        """Write artifacts into ``directory``; return their names relative to it."""
        raise NotImplementedError

    def _meta(self) -> dict:
        """Small JSON-able fitted metadata stored in model.json."""
        return {}

    def _load(self, directory: Path, meta: dict) -> None:
        raise NotImplementedError

    # ---- public contract ---------------------------------------------------------
    @classmethod
    def quick(cls, **overrides) -> "BaseModel":
        """A model with tiny settings (tests, smoke runs); ``overrides`` win."""
        return cls(**{**cls.QUICK_PARAMS, **overrides})

    @property
    def context_rows(self) -> int:
        """Trailing rows of X the prediction for the last row depends on."""
        return 1

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_features_in_")

    def check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {self.kind} model is not fitted yet; call fit(X, y) first", kind=self.kind)

    def fit(self, X, y) -> "BaseModel":
        arr, names = as_matrix(X)
        target = as_target(y, len(arr))
        if len(arr) < self.MIN_FIT_ROWS:
            raise InvalidInput(
                f"{self.kind} needs at least {self.MIN_FIT_ROWS} rows to fit, got {len(arr)}",
                rows=len(arr),
            )
        self._fit(arr, target)
        self.n_features_in_ = arr.shape[1]
        self.feature_names_in_ = names
        return self

    def _checked_input(self, X) -> np.ndarray:
        self.check_fitted()
        arr, names = as_matrix(X)
        if arr.shape[1] != self.n_features_in_:
            raise InvalidInput(
                f"X has {arr.shape[1]} features but this model was fitted with {self.n_features_in_}",
                expected=self.n_features_in_,
                got=arr.shape[1],
            )
        # A reordered frame would silently give nonsense; names make it detectable.
        if names is not None and self.feature_names_in_ is not None and names != self.feature_names_in_:
            raise InvalidInput("X columns differ from the features this model was fitted on")
        return arr

    def predict(self, X) -> np.ndarray:
        """One float64 prediction per row of X (row i may use rows before it)."""
        arr = self._checked_input(X)
        out = np.asarray(self._predict(arr), dtype=np.float64).reshape(-1)
        if out.shape != (len(arr),):
            raise RuntimeError(f"{self.kind}._predict returned shape {out.shape} for {len(arr)} rows")
        return out

    def predict_last(self, X) -> float:
        """Prediction for the last row of X, touching only the rows it needs (serving path)."""
        arr = self._checked_input(X)
        return float(self._predict_last(arr[-self.context_rows :]))

    def save(self, directory) -> list[str]:
        """Write the fitted model into ``directory``; return the file names written."""
        self.check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = list(self._save(directory))
        meta = {
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            "params": self.get_params(deep=False),
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": self.feature_names_in_,
            "state": self._meta(),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return [META_FILE, *files]

    @classmethod
    def load(cls, directory) -> "BaseModel":
        """Rebuild a model written by ``save``; predictions are identical."""
        meta = read_meta(directory)
        if meta.get("kind") != cls.kind:
            raise BundleIntegrityError(
                f"{directory} holds a {meta.get('kind')!r} model, not {cls.kind!r}",
                expected=cls.kind,
                found=meta.get("kind"),
            )
        model = cls(**meta["params"])
        model.n_features_in_ = int(meta["n_features_in"])
        model.feature_names_in_ = meta.get("feature_names_in")
        model._load(Path(directory), meta.get("state") or {})
        return model


# (cache, key_of) while ``shared_loads`` is active: models with equal keys are loaded once.
_SHARING: ContextVar = ContextVar("model_sharing", default=None)


@contextmanager
def shared_loads(key_of):
    """Within this block, ``load_shared`` loads a model whose files ``key_of(directory)`` names the same
    as an earlier one's only once and hands out that one object (global models saved under every asset
    then cost one copy per worker). Shared models must be used read-only, as serving does."""
    token = _SHARING.set(({}, key_of))
    try:
        yield
    finally:
        _SHARING.reset(token)


def load_shared(cls, directory) -> "BaseModel":
    state = _SHARING.get()
    key = None if state is None else state[1](directory)
    if key is None:
        return cls.load(directory)
    cache = state[0]
    if key not in cache:
        cache[key] = cls.load(directory)
    return cache[key]


def read_meta(directory) -> dict:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ModelNotFound(f"no {META_FILE} in {directory}", path=str(directory))
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleIntegrityError(f"unreadable {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise BundleIntegrityError(f"{path} is not a model description this code can read (format_version)")
    return meta
