"""Version names and directories of the model store, and the atomic file write everything here uses.

Layout of ``models_dir``::

    v1/ v2/ ...              one bundle per training run; loadable only once manifest.json exists
    v3/manifest.json         versions, data range, metrics and the sha256 of every other file
    aliases.json             {"production": "v3", "challenger": "v4"}; replaced atomically
    alias_history.jsonl      append-only log of every alias change (rollback reads it)
    .aliases.lock            serialises alias writers across processes

Versions, bundles, aliases and the catalog need only the standard library and ``filelock``.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from crypto_predictor.config import Config

MANIFEST = "manifest.json"
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")


def version_number(name) -> int | None:
    """``"v12"`` -> 12; anything that is not a version name -> None."""
    match = _VERSION_RE.match(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def sort_versions(names) -> list[str]:
    """Version names in numeric order (v9 before v10)."""
    return sorted(names, key=version_number)


def models_root(models_dir) -> Path:
    """The store directory: ``models_dir``, else MODELS_DIR from the environment."""
    return Path(Config().MODELS_DIR if models_dir is None else models_dir)


def version_dirs(models_dir: Path) -> list[str]:
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
    root = models_root(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    existing = version_dirs(root)
    number = version_number(existing[-1]) + 1 if existing else 1
    for _ in range(10_000):
        path = root / f"v{number}"
        try:
            os.mkdir(path)
        except FileExistsError:
            existing = version_dirs(root)
            number = max(number + 1, version_number(existing[-1]) + 1 if existing else 1)
            continue
        return path.name, path
    raise RuntimeError(f"could not allocate a version in {root}")


def available_versions(models_dir=None) -> list[str]:
    """Finalized versions (those with a manifest), in numeric order; hashes are not checked."""
    root = models_root(models_dir)
    return [v for v in version_dirs(root) if (root / v / MANIFEST).is_file()]


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


def atomic_write(path: Path, data: bytes) -> None:
    """Write temp, fsync, rename over ``path``, fsync the directory: readers see old or new."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
