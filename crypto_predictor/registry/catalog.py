"""The store as a whole: open a verified bundle by version or alias, list every version."""

from __future__ import annotations

from crypto_predictor.errors import BundleIntegrityError
from crypto_predictor.registry.aliases import ALIASES, read_aliases, resolve_version
from crypto_predictor.registry.bundle import Bundle, load_manifest, verify_bundle
from crypto_predictor.registry.versions import available_versions, models_root


def open_bundle(models_dir, version_or_alias: str) -> Bundle:
    """Resolve, verify every sha256, and only then hand out the bundle."""
    root = models_root(models_dir)
    version = resolve_version(root, version_or_alias)
    path = root / version
    return Bundle(path=path, manifest=verify_bundle(path))


def list_versions(models_dir=None, verify: bool = False) -> list[dict]:
    """Finalized versions in numeric order with created_at, headline metrics and aliases.

    ``status`` is "ok" (manifest readable; hashes checked only when ``verify``) or the reason
    the bundle cannot be loaded. Directories without a manifest (still training) are left out.
    """
    root = models_root(models_dir)
    aliases, _ = read_aliases(root)  # a corrupt alias file: what its history last recorded
    rows = []
    for version in available_versions(root):
        row = {"version": version, "path": str(root / version), "created_at": None, "metrics": {},
               "assets": [], "timeframes": [], "kinds": [], "status": "ok",
               "aliases": [a for a in ALIASES if aliases.get(a) == version]}
        try:
            manifest = verify_bundle(root / version) if verify else load_manifest(root / version)
        except BundleIntegrityError as exc:
            row["status"] = exc.message
        else:
            metrics = manifest.get("metrics")
            overall = metrics.get("overall") if isinstance(metrics, dict) else None
            row.update(created_at=manifest.get("created_at"),
                       metrics=overall if isinstance(overall, dict) else {},
                       assets=manifest.get("assets") or [], timeframes=manifest.get("timeframes") or [],
                       kinds=manifest.get("kinds") or [])
        rows.append(row)
    return rows
