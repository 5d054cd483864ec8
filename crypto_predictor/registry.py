"""The model store: versioned bundles with a sha256 manifest, and aliases that point at them.

Layout of ``models_dir``::

    v1/ v2/ ...              one bundle per training run; loadable only once manifest.json exists
    v3/manifest.json         versions, data range, metrics and the sha256 of every other file
    aliases.json             {"production": "v3", "challenger": "v4"}; replaced atomically
    alias_history.jsonl      append-only log of every alias change (rollback reads it)
    .aliases.lock            serialises alias writers across processes

Nothing in a bundle is unpickled before :func:`verify_bundle` has re-hashed every file.
This module only needs the standard library and ``filelock``, so serving workers import it cheaply.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from filelock import FileLock, Timeout

import crypto_predictor
from crypto_predictor.config import PROJECT_ROOT, Config
from crypto_predictor.errors import BundleIntegrityError, InvalidInput, ModelNotFound

ALIASES = ("production", "challenger")
MANIFEST = "manifest.json"
ALIAS_FILE = "aliases.json"
HISTORY_FILE = "alias_history.jsonl"
LOCK_FILE = ".aliases.lock"
MANIFEST_FORMAT = 1
LOCK_TIMEOUT_S = 30
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
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


# ---------------------------------------------------------------- versions

def version_number(name) -> int | None:
    """``"v12"`` -> 12; anything that is not a version name -> None."""
    match = _VERSION_RE.match(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def sort_versions(names) -> list[str]:
    """Version names in numeric order (v9 before v10)."""
    return sorted(names, key=version_number)


def _models_dir(models_dir) -> Path:
    return Path(Config().MODELS_DIR if models_dir is None else models_dir)


def _version_dirs(models_dir: Path) -> list[str]:
    try:
        entries = list(os.scandir(models_dir))
    except FileNotFoundError:
        return []
    return sort_versions(e.name for e in entries
                         if version_number(e.name) and e.is_dir(follow_symlinks=False))


def allocate_version(models_dir=None) -> tuple[str, Path]:
    """Reserve the next free version by creating its directory.

    ``os.mkdir`` either creates the directory or fails, atomically, so two trainings
    (threads, processes, or hosts sharing the store) can never get the same id.
    """
    root = _models_dir(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    existing = _version_dirs(root)
    number = version_number(existing[-1]) + 1 if existing else 1
    for _ in range(10_000):
        path = root / f"v{number}"
        try:
            os.mkdir(path)
        except FileExistsError:
            existing = _version_dirs(root)
            number = max(number + 1, version_number(existing[-1]) + 1 if existing else 1)
            continue
        return path.name, path
    raise RuntimeError(f"could not allocate a version in {root}")


def available_versions(models_dir=None) -> list[str]:
    """Finalized versions (those with a manifest), in numeric order; hashes are not checked."""
    root = _models_dir(models_dir)
    return [v for v in _version_dirs(root) if (root / v / MANIFEST).is_file()]


# ---------------------------------------------------------------- files and hashes

def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write temp, fsync, rename over ``path``, fsync the directory: readers see old or new."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sha256_file(path, fsync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
        if fsync:
            os.fsync(fh.fileno())
    return digest.hexdigest()


def _relpath(*parts) -> str:
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
    return {"package_version": crypto_predictor.__version__, "git_commit": commit,
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


def _utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


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


# ---------------------------------------------------------------- writing bundles

class BundleWriter:
    """Allocate a version, let the trainer write artifacts into it, then seal it with a manifest.

    ``with BundleWriter(d) as w: joblib.dump(m, w.path_for("bitcoin", "24h", "rf", "model.joblib"));
    w.finalize(...)``. Leaving the block without finalizing (or on an exception) removes the directory.
    """

    def __init__(self, models_dir=None):
        self.models_dir = _models_dir(models_dir)
        self.version, self.path = allocate_version(self.models_dir)
        self.manifest: dict | None = None

    def path_for(self, *parts) -> Path:
        """Absolute path for an artifact (parent directories created)."""
        if self.manifest is not None:
            raise InvalidInput(f"bundle {self.version} is finalized; it cannot change")
        rel = _relpath(*parts)
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
        manifest = _jsonable({
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "created_at": _utcnow(),
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
        _atomic_write(self.path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Remove an unfinished bundle (a finalized one is never removed here)."""
        if self.manifest is None:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()
        return False


# ---------------------------------------------------------------- opening bundles

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

    def has(self, *parts) -> bool:
        return _relpath(*parts) in self.files

    def artifacts(self, *prefix) -> list[str]:
        """Relative paths of artifacts under a prefix, e.g. ``artifacts("bitcoin", "24h")``."""
        if not prefix:
            return sorted(self.files)
        head = _relpath(*prefix) + "/"
        return sorted(rel for rel in self.files if rel.startswith(head))

    def artifact(self, *parts) -> Path:
        """Absolute path of an artifact the manifest lists; ModelNotFound otherwise."""
        rel = _relpath(*parts)
        if rel not in self.files:
            raise ModelNotFound(f"bundle {self.version} has no artifact {rel}", version=self.version)
        return self.path / rel

    def read_bytes(self, *parts) -> bytes:
        """Artifact bytes, re-hashed so what gets unpickled is exactly what was verified."""
        path = self.artifact(*parts)
        data = path.read_bytes()
        rel = _relpath(*parts)
        if hashlib.sha256(data).hexdigest() != self.files[rel]:
            raise BundleIntegrityError(f"bundle {self.version}: sha256 mismatch for {rel}", file=rel)
        return data

    def read_json(self, *parts):
        return json.loads(self.read_bytes(*parts))


def _not_found(root: Path, what: str) -> ModelNotFound:
    versions = available_versions(root)
    listed = ", ".join(versions) if versions else "none"
    return ModelNotFound(f"{what}; available versions: {listed}", available=versions)


def resolve_version(models_dir, version_or_alias: str) -> str:
    """Version name behind an alias or a version name; ModelNotFound listing the available ones."""
    root = _models_dir(models_dir)
    name = str(version_or_alias).strip()
    if name in ALIASES:
        target = get_aliases(root).get(name)
        if target is None:
            raise _not_found(root, f"alias {name!r} is not set")
        name = target
    if version_number(name) is None or not (root / name / MANIFEST).is_file():
        raise _not_found(root, f"unknown model version or alias {version_or_alias!r}")
    return name


def open_bundle(models_dir, version_or_alias: str) -> Bundle:
    """Resolve, verify every sha256, and only then hand out the bundle."""
    root = _models_dir(models_dir)
    version = resolve_version(root, version_or_alias)
    path = root / version
    return Bundle(path=path, manifest=verify_bundle(path))


def list_versions(models_dir=None, verify: bool = False) -> list[dict]:
    """Finalized versions in numeric order with created_at, headline metrics and aliases.

    ``status`` is "ok" (manifest readable; hashes checked only when ``verify``) or the reason
    the bundle cannot be loaded. Directories without a manifest (still training) are left out.
    """
    root = _models_dir(models_dir)
    aliases = get_aliases(root)
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


# ---------------------------------------------------------------- aliases

def _check_alias(alias: str) -> str:
    if alias not in ALIASES:
        raise InvalidInput(f"unknown alias {alias!r}; valid aliases: {', '.join(ALIASES)}")
    return alias


def get_aliases(models_dir=None) -> dict:
    """``{"production": "v3", ...}`` for the aliases that are set."""
    path = _models_dir(models_dir) / ALIAS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BundleIntegrityError(f"alias file {path} is unreadable: {exc}", file=ALIAS_FILE) from None
    if not isinstance(data, dict):
        raise BundleIntegrityError(f"alias file {path} is not a JSON object", file=ALIAS_FILE)
    return {a: v for a, v in data.items() if a in ALIASES and version_number(v)}


def alias_state_token(models_dir=None) -> str | None:
    """sha256 of the alias file (None when absent): serving workers poll it to notice switches.

    A content hash, unlike mtime, cannot miss two switches made within one clock tick.
    """
    try:
        return hashlib.sha256((_models_dir(models_dir) / ALIAS_FILE).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def alias_history(models_dir=None, alias: str | None = None) -> list[dict]:
    """Alias changes, oldest first; a torn last line (crash mid-append) is skipped."""
    path = _models_dir(models_dir) / HISTORY_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (alias is None or entry.get("alias") == alias):
            entries.append(entry)
    return entries


def _lock(root: Path) -> FileLock:
    if not root.is_dir():  # do not create a store because of a mistyped --models-dir
        raise ModelNotFound(f"no model store at {root}; available versions: none", available=[])
    return FileLock(str(root / LOCK_FILE), timeout=LOCK_TIMEOUT_S)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return ""


def _switch(root: Path, alias: str, version: str, action: str) -> dict:
    """Point ``alias`` at ``version`` (caller holds the lock); alias file first, then history."""
    aliases = get_aliases(root)
    entry = {"time": _utcnow(), "alias": alias, "from": aliases.get(alias), "to": version,
             "action": action, "user": _user()}
    if aliases.get(alias) == version:
        return entry  # nothing changes, so nothing to record
    aliases[alias] = version
    _atomic_write(root / ALIAS_FILE, json.dumps(aliases, indent=2, sort_keys=True).encode())
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    with open(root / HISTORY_FILE, "a+b") as fh:  # appends always land at the end
        if fh.seek(0, os.SEEK_END) and (fh.seek(-1, os.SEEK_END), fh.read(1))[1] != b"\n":
            line = b"\n" + line  # a crash left a torn line: do not glue this entry onto it
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return entry


def set_alias(models_dir, alias: str, version: str) -> dict:
    """Point an alias at an existing, verified version (or at what another alias points to).

    Returns the history entry (``from`` / ``to``).
    """
    root = _models_dir(models_dir)
    _check_alias(alias)
    try:
        with _lock(root):
            target = resolve_version(root, version)
            verify_bundle(root / target)
            return _switch(root, alias, target, "set")
    except Timeout:
        raise InvalidInput(f"another deploy holds {root / LOCK_FILE}; try again") from None


def _alias_stack(entries: list[dict], current: str | None) -> list[str]:
    """Replay history into the stack of versions the alias went through (rollbacks pop)."""
    stack: list[str] = []
    for entry in entries:
        if entry.get("action") == "rollback" and stack and stack[-1] == entry.get("from"):
            stack.pop()
        to = entry.get("to")
        if to and (not stack or stack[-1] != to):
            stack.append(to)
    if current and (not stack or stack[-1] != current):
        stack.append(current)  # the alias file is the truth if history lost its last line
    return stack


def rollback(models_dir=None, alias: str = "production") -> dict:
    """Return an alias to the version it pointed at before its current one.

    Repeated rollbacks keep walking back. Returns the history entry.
    """
    root = _models_dir(models_dir)
    _check_alias(alias)
    try:
        with _lock(root):
            current = get_aliases(root).get(alias)
            stack = _alias_stack(alias_history(root, alias), current)
            if current is None or len(stack) < 2:
                raise ModelNotFound(f"alias {alias!r} has no previous version to roll back to")
            previous = stack[-2]
            if not (root / previous / MANIFEST).is_file():
                raise _not_found(root, f"previous {alias} version {previous} no longer exists")
            verify_bundle(root / previous)
            return _switch(root, alias, previous, "rollback")
    except Timeout:
        raise InvalidInput(f"another deploy holds {root / LOCK_FILE}; try again") from None
