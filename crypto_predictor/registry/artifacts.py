"""Where a trained pair lives inside a bundle, and the one reader (and writer) of its files.

``<version>/<asset>/<timeframe>/pair.json`` describes the pair (bar, horizon, features, context,
data range); ``<asset>/<timeframe>/<kind>/`` holds one saved model (``model.json`` and its
arrays) plus its ``calibration.json`` (rolling-conformal settings, the trailing out-of-sample
residuals and the direction calibrator). ``<asset>/<timeframe>/served/calibration.json`` holds the
served forecast: the base kind it shrinks toward naive, the shrinkage factor the skill gate
learned (``training.skill_gate``), and that gated forecast's own residuals and calibrator; it has
no model of its own. Training writes these through ``write_pair`` and
``calibration_state``; serving and the re-test read them through ``read_pair`` only, so the
three can never disagree on what a file means or which checks it must pass.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_predictor.calibration import RollingConformal
from crypto_predictor.confidence import DirectionCalibrator
from crypto_predictor.datasets import bar_for, horizon_rows
from crypto_predictor.errors import BundleIntegrityError, InvalidInput, ModelNotFound
from crypto_predictor.registry.headline import SERVED  # noqa: F401  (defined where listings read it)
from crypto_predictor.timeutil import to_utc

PAIR_FILE = "pair.json"
CALIBRATION_FILE = "calibration.json"
MODEL_META = "model.json"  # models.base.META_FILE: written by every kind's save()


def bundle_pairs(bundle) -> list[tuple[str, str]]:
    """(asset, timeframe) pairs a bundle holds, from its ``<asset>/<timeframe>/pair.json`` files."""
    pairs = []
    for rel in bundle.files:
        parts = rel.split("/")
        if len(parts) == 3 and parts[2] == PAIR_FILE:
            pairs.append((parts[0], parts[1]))
    return sorted(pairs)


def pair_kinds(bundle, asset: str, timeframe: str) -> list[str]:
    """Kinds saved for a pair (those with a calibration file), in the bundle's order."""
    saved = {rel.split("/")[2] for rel in bundle.artifacts(asset, timeframe)
             if rel.count("/") == 3 and rel.endswith("/" + CALIBRATION_FILE)} - {SERVED}
    order = list(bundle.manifest.get("kinds") or []) + sorted(saved)
    return [k for k in dict.fromkeys(order) if k in saved]


def base_kind(kinds, rows: dict) -> str:
    """"ensemble" when saved, else the only kind, else the lowest walk-forward MASE in ``rows``
    (kind -> metrics). Training picks the served forecast's base by this rule, serving reads it back."""
    saved = sorted(k for k in kinds if k != SERVED)
    if "ensemble" in saved or len(saved) == 1:
        return "ensemble" if "ensemble" in saved else saved[0]
    return min(saved, key=lambda k: (rows.get(k) or {}).get("mase") or math.inf)


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class StoredResiduals:
    """Trailing out-of-sample residuals (realised minus predicted log return) at training time."""

    times: pd.DatetimeIndex  # prediction time of each residual
    values: np.ndarray
    scales: np.ndarray | None  # causal volatility at each time (normalised intervals), else None


@dataclass(frozen=True)
class KindArtifacts:
    """One saved kind of a pair: how its intervals and confidence are made, and its model."""

    pair: "PairArtifacts"
    kind: str
    conformal: RollingConformal
    calibrator: DirectionCalibrator
    residuals: StoredResiduals
    weights: dict | None  # ensemble member weights, when the kind is an ensemble
    model_kind: str = ""  # whose model predicts: the kind itself, or the served forecast's base kind
    shrink: float = 1.0  # the served forecast is shrink * model prediction (1 for a plain kind)

    def load_model(self):
        """The fitted model, checked against the features pair.json lists (verified files only)."""
        from crypto_predictor.models import load_model  # late: scikit-learn only in the processes that load one

        pair = self.pair
        kind = self.model_kind or self.kind
        pair.bundle.artifact(pair.asset, pair.timeframe, kind, MODEL_META)  # listed, hence verified
        model = load_model(pair.bundle.path / pair.asset / pair.timeframe / kind)
        names = getattr(model, "feature_names_in_", None)
        if names is not None and list(names) != list(pair.features):
            raise BundleIntegrityError(f"bundle {pair.version}: {pair.asset}/{pair.timeframe} {kind} was "
                                       "fitted on other features than pair.json lists")
        return model


@dataclass(frozen=True)
class PairArtifacts:
    """What ``pair.json`` says about one (asset, timeframe) of a verified bundle."""

    bundle: object  # registry.bundle.Bundle
    asset: str
    timeframe: str
    bar: str
    horizon: int  # in bars
    features: list
    context: list
    data_range: tuple  # first and last training row (prediction times), ISO strings
    kinds: list  # saved kinds, bundle order

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def data_end(self) -> pd.Timestamp:
        return to_utc(self.data_range[1])

    def metrics(self) -> dict:
        """Walk-forward rows of this pair in the manifest: kind (and "naive") -> metrics."""
        overall = (self.bundle.manifest.get("metrics") or {}).get("overall") or {}
        return (overall.get(self.asset) or {}).get(self.timeframe) or {}

    def served_kind(self) -> str:
        """The kind serving uses (``base_kind``); the served forecast shrinks it toward naive."""
        if not self.kinds:
            raise BundleIntegrityError(f"bundle {self.version}: {self.asset}/{self.timeframe} has no saved model")
        return base_kind(self.kinds, self.metrics())

    def served(self) -> KindArtifacts:
        """The served forecast: the base kind's model times the skill gate's shrinkage factor, with
        the gated forecast's own intervals and confidence. Bundles written before the gate serve
        ``served_kind()`` unshrunk."""
        if not self.bundle.has(self.asset, self.timeframe, SERVED, CALIBRATION_FILE):
            return self.kind(self.served_kind())
        state = self.bundle.read_json(self.asset, self.timeframe, SERVED, CALIBRATION_FILE)
        try:
            base, shrink = str(state["base"]), float(state["shrink"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleIntegrityError(f"bundle {self.version}: {self.asset}/{self.timeframe} {SERVED}: "
                                       f"unreadable {CALIBRATION_FILE}: {exc}") from None
        if base not in self.kinds or not 0.0 <= shrink <= 1.0:
            raise BundleIntegrityError(f"bundle {self.version}: {self.asset}/{self.timeframe} {SERVED}: base "
                                       f"{base!r} not saved or shrink {shrink} outside [0, 1]")
        art = self._artifacts(SERVED, state)
        return KindArtifacts(self, SERVED, art.conformal, art.calibrator, art.residuals, None, base, shrink)

    def kind(self, kind: str) -> KindArtifacts:
        if kind not in self.kinds:
            raise ModelNotFound(f"bundle {self.version} has no {kind} model for {self.asset} {self.timeframe}",
                                version=self.version)
        return self._artifacts(kind, self.bundle.read_json(self.asset, self.timeframe, kind, CALIBRATION_FILE))

    def _artifacts(self, kind: str, state: dict) -> KindArtifacts:
        where = f"bundle {self.version}: {self.asset}/{self.timeframe} {kind}"
        try:
            conformal = RollingConformal(**state["conformal"])
            calibrator = DirectionCalibrator.from_state(state["direction_calibrator"])
            stored = state["residuals"]
            times = pd.DatetimeIndex(pd.to_datetime(pd.Series(stored["time"], dtype=object), utc=True))
            values = np.asarray(stored["residual"], dtype=float)
        except (KeyError, TypeError, ValueError, InvalidInput) as exc:
            raise BundleIntegrityError(f"{where}: unreadable {CALIBRATION_FILE}: {exc}") from None
        if conformal.horizon != self.horizon:
            raise BundleIntegrityError(f"{where}: calibration horizon {conformal.horizon} != {self.horizon}")
        scales = None
        if conformal.normalised:
            if stored.get("scale") is None:
                raise BundleIntegrityError(f"{where}: normalised intervals without stored residual scales")
            scales = np.asarray([np.nan if v is None else v for v in stored["scale"]], dtype=float)
        if len(times) != len(values) or (scales is not None and len(scales) != len(values)):
            raise BundleIntegrityError(f"{where}: residual times, values and scales differ in length")
        return KindArtifacts(self, kind, conformal, calibrator, StoredResiduals(times, values, scales),
                             state.get("weights"))


def read_pair(bundle, asset: str, timeframe: str) -> PairArtifacts:
    """``pair.json`` of a verified bundle, checked against the bars and horizon this code builds."""
    meta = bundle.read_json(asset, timeframe, PAIR_FILE)
    try:
        bar, horizon = meta["bar"], int(meta["horizon"])
        features, data_range = list(meta["features"]), tuple(meta["data_range"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleIntegrityError(f"bundle {bundle.version}: {asset}/{timeframe}: unreadable {PAIR_FILE}: "
                                   f"{exc}") from None
    if bar != bar_for(timeframe) or horizon != horizon_rows(timeframe):
        raise BundleIntegrityError(f"bundle {bundle.version}: {asset}/{timeframe} was trained on {bar} bars with "
                                   f"horizon {horizon}; this code builds {bar_for(timeframe)} bars with horizon "
                                   f"{horizon_rows(timeframe)}")
    return PairArtifacts(bundle, asset, timeframe, bar, horizon, features, list(meta.get("context") or []),
                         data_range, pair_kinds(bundle, asset, timeframe))


# ---------------------------------------------------------------- writing (training)

def calibration_state(conformal: RollingConformal, calibrator: DirectionCalibrator, times, residuals, scales,
                      **extra) -> dict:
    """The content of ``calibration.json``: what serving and the re-test need for intervals and confidence."""
    return {
        "conformal": {"window": conformal.window, "horizon": conformal.horizon, "levels": list(conformal.levels),
                      "min_history": conformal.min_history, "symmetric": conformal.symmetric,
                      "vol_span": conformal.vol_span, "har": None if conformal.har is None else conformal.har.to_state(),
                      "scale_power": conformal.scale_power},
        "residuals": {
            "time": [t.isoformat() for t in times],
            "residual": np.round(np.asarray(residuals, dtype=float), 10).tolist(),
            "scale": None if scales is None else np.round(np.asarray(scales, dtype=float), 10).tolist(),
        },
        "direction_calibrator": calibrator.to_state(),
        **extra,
    }


def write_calibration(kind_dir: Path, state: dict) -> str:
    """Write a kind's ``calibration.json``; returns its name relative to the kind directory."""
    Path(kind_dir).mkdir(parents=True, exist_ok=True)
    (Path(kind_dir) / CALIBRATION_FILE).write_text(json.dumps(state))
    return CALIBRATION_FILE


def write_pair(pair_dir: Path, meta: dict) -> str:
    """Write ``pair.json`` (asset, timeframe, bar, horizon, features, context, data_range, ...)."""
    (Path(pair_dir) / PAIR_FILE).write_text(json.dumps(meta, indent=2))
    return PAIR_FILE
