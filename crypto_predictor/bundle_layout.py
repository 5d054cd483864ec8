"""Where a trained pair lives inside a bundle; written by training, read by evaluation and serving.

``<version>/<asset>/<timeframe>/pair.json`` describes the pair (bar, horizon, features, context,
data range); ``<asset>/<timeframe>/<kind>/`` holds one saved model plus its ``calibration.json``.
"""

from __future__ import annotations

PAIR_FILE = "pair.json"
CALIBRATION_FILE = "calibration.json"


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
             if rel.count("/") == 3 and rel.endswith("/" + CALIBRATION_FILE)}
    order = list(bundle.manifest.get("kinds") or []) + sorted(saved)
    return [k for k in dict.fromkeys(order) if k in saved]
