"""One bundle: its files and their sha256, the manifest that seals them, a writer and a verified reader.

Nothing in a bundle is unpickled before :func:`verify_bundle` has re-hashed every file, and
``Bundle.read_bytes`` re-hashes what it hands out.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path, PurePosixPath

from crypto_predictor import __version__
from crypto_predictor.config import PROJECT_ROOT
from crypto_predictor.errors import BundleIntegrityError, DataNotFound, InvalidInput, ModelNotFound
from crypto_predictor.registry.versions import MANIFEST, allocate_version, atomic_write, models_root
from crypto_predictor.timeutil import utcnow_iso

MANIFEST_FORMAT = 1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Distribution names to try per library: xgboost ships as "xgboost-cpu" in requirements.txt.
_LIBRARIES = {
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "scikit-learn": ("scikit-learn",),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "joblib": ("joblib",),
}


def sha256_file(path, fsync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
        if fsync:
            os.fsync(fh.fileno())
    return digest.hexdigest()


def relpath(*parts) -> str:
    """Join parts into a bundle-relative POSIX path, refusing anything that escapes the bundle."""
    rel = PurePosixPath(*[str(p) for p in parts])
    if not parts or rel.is_absolute() or ".." in rel.parts or "\\" in str(rel) or str(rel) in ("", "."):
        raise InvalidInput(f"invalid artifact path {'/'.join(map(str, parts))!r}")
    return str(rel)


def bundle_files(path) -> list[str]:
    """Every file in a bundle directory except the manifest, as sorted relative POSIX paths."""
    root = Path(path)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():  # a link could point anywhere: bundles must be self-contained
                raise BundleIntegrityError(f"bundle {root.name} contains a symlink: {rel}", file=rel)
            if name in filenames and rel != MANIFEST:
                found.append(rel)
    return sorted(found)


# ---------------------------------------------------------------- manifest

def _jsonable(obj):
    """Plain JSON types for numpy scalars, timestamps, paths and sets; NaN/inf become null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _jsonable(obj.tolist())
    return str(obj)


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_version() -> dict:
    """Package version plus the checkout's commit (None outside git, e.g. in a Docker image).

    ``git_dirty`` flags uncommitted changes to tracked files: then the commit alone does not
    say which code trained the bundle.
    """
    commit = _git("rev-parse", "HEAD")
    commit = commit if commit and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"package_version": __version__, "git_commit": commit,
            "git_dirty": None if status is None else bool(status)}


def library_versions() -> dict:
    """Installed versions read from package metadata, so nothing (TensorFlow!) gets imported."""
    versions = {}
    for name, dists in _LIBRARIES.items():
        versions[name] = None
        for dist in dists:
            try:
                versions[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def load_manifest(path) -> dict:
    """The parsed manifest of a bundle directory; BundleIntegrityError if absent or unreadable."""
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleIntegrityError(f"bundle {root.name} has no {MANIFEST} (incomplete)",
                                   file=MANIFEST) from None
    except (OSError, ValueError) as exc:
        raise BundleIntegrityError(f"bundle {root.name}: unreadable {MANIFEST}: {exc}",
                                   file=MANIFEST) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _SHA256_RE.match(v)
            for k, v in files.items()):
        raise BundleIntegrityError(f"bundle {root.name}: {MANIFEST} has no valid 'files' table",
                                   file=MANIFEST)
    return manifest


def verify_bundle(path) -> dict:
    """Re-hash every file against the manifest; returns the manifest or raises BundleIntegrityError.

    Refuses missing files, files the manifest does not list, and any sha256 mismatch.
    """
    root = Path(path)
    manifest = load_manifest(root)
    if manifest.get("version") != root.name:
        raise BundleIntegrityError(
            f"bundle {root.name}: manifest says version {manifest.get('version')!r}", file=MANIFEST)
    expected = manifest["files"]
    actual = set(bundle_files(root))
    for rel in sorted(set(expected) - actual):
        raise BundleIntegrityError(f"bundle {root.name}: file missing: {rel}", file=rel)
    for rel in sorted(actual - set(expected)):
        raise BundleIntegrityError(f"bundle {root.name}: file not in manifest: {rel}", file=rel)
    for rel in sorted(expected):
        got = sha256_file(root / rel)
        if got != expected[rel]:
            raise BundleIntegrityError(
                f"bundle {root.name}: sha256 mismatch for {rel} "
                f"(expected {expected[rel][:12]}..., got {got[:12]}...)", file=rel)
    return manifest


# ---------------------------------------------------------------- writing

class BundleWriter:
    """Allocate a version, let the trainer write artifacts into it, then seal it with a manifest.

    ``with BundleWriter(d) as w: joblib.dump(m, w.path_for("bitcoin", "24h", "rf", "model.joblib"));
    w.finalize(...)``. Leaving the block without finalizing (or on an exception) removes the directory.
    """

    def __init__(self, models_dir=None, store=None):
        """``store`` (a ``registry.store`` backend) allocates the version when given, so versions
        stay unique across every host sharing it; its ``publish`` is the caller's to call."""
        self.models_dir = store.root if store is not None else models_root(models_dir)
        self.version, self.path = store.allocate() if store is not None else allocate_version(self.models_dir)
        self.manifest: dict | None = None

    def path_for(self, *parts) -> Path:
        """Absolute path for an artifact (parent directories created)."""
        if self.manifest is not None:
            raise InvalidInput(f"bundle {self.version} is finalized; it cannot change")
        rel = relpath(*parts)
        if rel == MANIFEST:
            raise InvalidInput(f"{MANIFEST} is written by finalize()")
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_bytes(self, rel: str, data: bytes) -> Path:
        target = self.path_for(rel)
        target.write_bytes(data)
        return target

    def write_json(self, rel: str, obj) -> Path:
        return self.write_bytes(rel, json.dumps(_jsonable(obj), indent=2, sort_keys=True).encode())

    def finalize(self, *, assets=(), timeframes=(), kinds=(), features=(), data_range=None,
                 metrics=None, extra=None) -> dict:
        """Hash every file and write manifest.json atomically; from then on the bundle is loadable."""
        if self.manifest is not None:
            raise InvalidInput(f"bundle {self.version} is already finalized")
        files = {rel: sha256_file(self.path / rel, fsync=True) for rel in bundle_files(self.path)}
        if not files:
            raise InvalidInput(f"bundle {self.version} has no artifact files to seal")
        self._link_duplicates(files)
        manifest = _jsonable({
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "created_at": utcnow_iso(),
            "code": code_version(),
            "python": sys.version.split()[0],
            "libraries": library_versions(),
            "assets": list(assets),
            "timeframes": list(timeframes),
            "kinds": list(kinds),
            "features": list(features),
            "data_range": data_range,
            "metrics": metrics or {},
            "extra": extra or {},
            "files": files,
        })
        atomic_write(self.path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        self.manifest = manifest
        return manifest

    def _link_duplicates(self, files: dict) -> None:
        """Identical files (a global model saved under every asset) become hard links to one copy, so
        the bundle costs its unique content on disk; a copy that drops links stays correct, only larger."""
        first: dict[str, Path] = {}
        for rel in sorted(files):
            path = self.path / rel
            original = first.setdefault(files[rel], path)
            if original == path:
                continue
            spare = path.with_name(path.name + ".link")
            try:
                os.link(original, spare)
                os.replace(spare, path)
            except OSError:  # no hard links here (another filesystem): keep the copy
                spare.unlink(missing_ok=True)

    def abort(self) -> None:
        """Remove an unfinished bundle (a finalized one is never removed here)."""
        if self.manifest is None:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()
        return False


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its directory and manifest, with helpers to find artifacts."""

    path: Path
    manifest: dict

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def files(self) -> dict:
        return self.manifest["files"]

    @cached_property
    def _model_files(self) -> dict:
        """Folder -> [(path below it, sha256)] of every file under it but calibration files, built once
        (a worker asks for every saved model's folder while it loads)."""
        out: dict[str, list] = {}
        for rel, sha in self.files.items():
            parts = rel.split("/")
            if parts[-1] == "calibration.json":
                continue
            for depth in range(1, len(parts)):
                out.setdefault("/".join(parts[:depth]), []).append(("/".join(parts[depth:]), sha))
        return out

    def content_key(self, directory) -> tuple | None:
        """(relative path, sha256) of every model file under ``directory`` (a saved model's folder inside this
        bundle): equal keys mean identical models, which serving then loads once. None outside the bundle."""
        try:
            prefix = Path(directory).resolve().relative_to(self.path.resolve()).as_posix()
        except ValueError:
            return None
        files = self._model_files.get(prefix)
        return tuple(sorted(files)) if files else None

    def has(self, *parts) -> bool:
        return relpath(*parts) in self.files

    def artifacts(self, *prefix) -> list[str]:
        """Relative paths of artifacts under a prefix, e.g. ``artifacts("bitcoin", "24h")``."""
        if not prefix:
            return sorted(self.files)
        head = relpath(*prefix) + "/"
        return sorted(rel for rel in self.files if rel.startswith(head))

    def artifact(self, *parts) -> Path:
        """Absolute path of an artifact the manifest lists; ModelNotFound otherwise."""
        rel = relpath(*parts)
        if rel not in self.files:
            raise ModelNotFound(f"bundle {self.version} has no artifact {rel}", version=self.version)
        return self.path / rel

    def read_bytes(self, *parts) -> bytes:
        """Artifact bytes, re-hashed so what gets unpickled is exactly what was verified."""
        path = self.artifact(*parts)
        data = path.read_bytes()
        rel = relpath(*parts)
        if hashlib.sha256(data).hexdigest() != self.files[rel]:
            raise BundleIntegrityError(f"bundle {self.version}: sha256 mismatch for {rel}", file=rel)
        return data

    def read_json(self, *parts):
        return json.loads(self.read_bytes(*parts))


def open_bundle_dir(path) -> Bundle:
    """A bundle directory given directly (``--model_path``), verified before anything is read."""
    root = Path(path)
    if not root.is_dir():
        raise DataNotFound(f"no bundle directory at {root}")
    return Bundle(path=root, manifest=verify_bundle(root))
