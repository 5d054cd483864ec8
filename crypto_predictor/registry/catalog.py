"""The store as a whole: open a verified bundle by version or alias, list every version."""

from __future__ import annotations

import threading

from crypto_predictor.errors import BundleIntegrityError
from crypto_predictor.registry.aliases import ALIASES, read_aliases, resolve_version
from crypto_predictor.registry.bundle import Bundle, load_manifest, verify_bundle
from crypto_predictor.registry.headline import headline
from crypto_predictor.registry.versions import MANIFEST, available_versions, models_root


def open_bundle(models_dir, version_or_alias: str) -> Bundle:
    """Resolve, verify every sha256, and only then hand out the bundle."""
    root = models_root(models_dir)
    version = resolve_version(root, version_or_alias)
    path = root / version
    return Bundle(path=path, manifest=verify_bundle(path))


def listing_row(version: str, path, aliases: dict, manifest: dict | None = None, problem: str | None = None,
                metrics: bool = True) -> dict:
    """One version as ``list_versions`` lists it (both stores): its aliases, and from its manifest the
    creation time, assets, timeframes, kinds, each pair's ``skill`` (``headline``) and (``metrics``)
    the overall metrics; ``problem``: why the bundle cannot be loaded."""
    row = {"version": version, "path": str(path), "created_at": None, **({"metrics": {}} if metrics else {}),
           "skill": {}, "assets": [], "timeframes": [], "kinds": [], "status": "ok" if problem is None else problem,
           "aliases": [a for a in ALIASES if aliases.get(a) == version]}
    if problem is None and manifest is not None:
        found = manifest.get("metrics")
        overall = found.get("overall") if isinstance(found, dict) else None
        overall = overall if isinstance(overall, dict) else {}
        row.update(created_at=manifest.get("created_at"), assets=manifest.get("assets") or [],
                   timeframes=manifest.get("timeframes") or [], kinds=manifest.get("kinds") or [],
                   skill=headline(overall))
        if metrics:
            row["metrics"] = overall
    return row


class Summaries:
    """Listing rows without metrics, per version, kept while what they were read from is unchanged: a full
    production manifest is about 1.5 MB of JSON, and /api/v1/models and the dashboard list every version."""

    def __init__(self):
        self._held: dict[str, tuple] = {}
        self._lock = threading.Lock()  # a worker's request threads list at once

    def has(self, version: str, key) -> bool:
        held = self._held.get(version)
        return held is not None and held[0] == key

    def row(self, version: str, key, read) -> dict:
        """The row read for ``key`` (what identifies the manifest's content), or ``read()``'s."""
        held = self._held.get(version)
        if held is None or held[0] != key:
            held = (key, read())
            with self._lock:
                self._held[version] = held
        return dict(held[1])

    def keep_only(self, versions) -> None:
        with self._lock:
            for gone in set(self._held) - set(versions):
                del self._held[gone]


def _read_row(root, version: str, aliases: dict, verify: bool, metrics: bool) -> dict:
    try:
        manifest = verify_bundle(root / version) if verify else load_manifest(root / version)
    except BundleIntegrityError as exc:
        return listing_row(version, root / version, aliases, problem=exc.message, metrics=metrics)
    return listing_row(version, root / version, aliases, manifest, metrics=metrics)


def list_versions(models_dir=None, verify: bool = False, metrics: bool = True,
                  summaries: Summaries | None = None) -> list[dict]:
    """Finalized versions in numeric order with created_at, headline metrics and aliases.

    ``status`` is "ok" (manifest readable; hashes checked only when ``verify``) or the reason
    the bundle cannot be loaded. Directories without a manifest (still training) are left out.
    Without ``metrics`` and ``verify``, ``summaries`` keeps each row while its manifest file's size,
    modification time and inode stay the same.
    """
    root = models_root(models_dir)
    aliases, _ = read_aliases(root)  # a corrupt alias file: what its history last recorded
    versions = available_versions(root)
    if metrics or verify or summaries is None:
        return [_read_row(root, v, aliases, verify, metrics) for v in versions]
    rows = []
    for version in versions:
        try:
            stat = (root / version / MANIFEST).stat()
        except OSError:  # removed meanwhile: read it, to report why
            rows.append(_read_row(root, version, aliases, False, False))
            continue
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        row = summaries.row(version, key, lambda v=version: _read_row(root, v, {}, False, False))
        rows.append({**row, "aliases": [a for a in ALIASES if aliases.get(a) == version]})
    summaries.keep_only(versions)
    return rows
