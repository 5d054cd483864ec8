"""Aliases (production, challenger) that point at versions: read, resolve, switch, roll back.

``aliases.json`` is replaced atomically and every change is appended to ``alias_history.jsonl``
under a file lock, so concurrent deploys serialise and a rollback can replay the history.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock, Timeout

from crypto_predictor.errors import BundleIntegrityError, InvalidInput, ModelNotFound
from crypto_predictor.registry.bundle import verify_bundle
from crypto_predictor.registry.versions import (MANIFEST, atomic_write, available_versions, models_root,
                                                version_number)
from crypto_predictor.timeutil import utcnow_iso

ALIASES = ("production", "challenger")
ALIAS_FILE = "aliases.json"
HISTORY_FILE = "alias_history.jsonl"
LOCK_FILE = ".aliases.lock"
LOCK_TIMEOUT_S = 30


def _not_found(root: Path, what: str) -> ModelNotFound:
    versions = available_versions(root)
    listed = ", ".join(versions) if versions else "none"
    return ModelNotFound(f"{what}; available versions: {listed}", available=versions)


def resolve_version(models_dir, version_or_alias: str) -> str:
    """Version name behind an alias or a version name; ModelNotFound listing the available ones."""
    root = models_root(models_dir)
    name = str(version_or_alias).strip()
    if name in ALIASES:
        target = get_aliases(root).get(name)
        if target is None:
            raise _not_found(root, f"alias {name!r} is not set")
        name = target
    if version_number(name) is None or not (root / name / MANIFEST).is_file():
        raise _not_found(root, f"unknown model version or alias {version_or_alias!r}")
    return name


def check_alias(alias: str) -> str:
    if alias not in ALIASES:
        raise InvalidInput(f"unknown alias {alias!r}; valid aliases: {', '.join(ALIASES)}")
    return alias


REPAIR_HINT = "deploy_model.py --alias production --version vN rewrites it"


def get_aliases(models_dir=None) -> dict:
    """``{"production": "v3", ...}`` for the aliases that are set; BundleIntegrityError (naming the
    file, never its path) when the alias file cannot be read."""
    path = models_root(models_dir) / ALIAS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise BundleIntegrityError(f"alias file {ALIAS_FILE} is not valid JSON ({exc}); {REPAIR_HINT}",
                                   file=ALIAS_FILE) from None
    except OSError as exc:
        raise BundleIntegrityError(f"alias file {ALIAS_FILE} cannot be read ({exc.__class__.__name__}); "
                                   f"{REPAIR_HINT}", file=ALIAS_FILE) from None
    if not isinstance(data, dict):
        raise BundleIntegrityError(f"alias file {ALIAS_FILE} is not a JSON object; {REPAIR_HINT}", file=ALIAS_FILE)
    return {a: v for a, v in data.items() if a in ALIASES and version_number(v)}


def read_aliases(models_dir=None) -> tuple[dict, str | None]:
    """(aliases, problem): like ``get_aliases``, but a corrupt alias file gives the aliases its
    history last recorded and the problem found, instead of an error (for listing and repair)."""
    root = models_root(models_dir)
    try:
        return get_aliases(root), None
    except BundleIntegrityError as exc:
        rebuilt = {}
        for entry in alias_history(root):
            if entry.get("alias") in ALIASES and version_number(entry.get("to") or ""):
                rebuilt[entry["alias"]] = entry["to"]
        return rebuilt, exc.message


def alias_state_token(models_dir=None) -> str | None:
    """sha256 of the alias file (None when absent): serving workers poll it to notice switches.

    A content hash, unlike mtime, cannot miss two switches made within one clock tick.
    """
    try:
        return hashlib.sha256((models_root(models_dir) / ALIAS_FILE).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def alias_history(models_dir=None, alias: str | None = None) -> list[dict]:
    """Alias changes, oldest first; a torn last line (crash mid-append) is skipped."""
    path = models_root(models_dir) / HISTORY_FILE
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


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return ""


def _switch(root: Path, alias: str, version: str, action: str) -> dict:
    """Point ``alias`` at ``version`` (caller holds the lock); alias file first, then history. A
    corrupt alias file is rewritten from its history plus this change (``entry["repaired"]`` says
    what was wrong)."""
    aliases, problem = read_aliases(root)
    entry = {"time": utcnow_iso(), "alias": alias, "from": aliases.get(alias), "to": version,
             "action": action, "user": current_user()}
    if aliases.get(alias) == version and problem is None:
        return entry  # nothing changes, so nothing to record
    aliases[alias] = version
    atomic_write(root / ALIAS_FILE, json.dumps(aliases, indent=2, sort_keys=True).encode())
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    with open(root / HISTORY_FILE, "a+b") as fh:  # appends always land at the end
        if fh.seek(0, os.SEEK_END) and (fh.seek(-1, os.SEEK_END), fh.read(1))[1] != b"\n":
            line = b"\n" + line  # a crash left a torn line: do not glue this entry onto it
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return entry if problem is None else {**entry, "repaired": problem}


def set_alias(models_dir, alias: str, version: str) -> dict:
    """Point an alias at an existing, verified version (or at what another alias points to).

    Returns the history entry (``from`` / ``to``).
    """
    root = models_root(models_dir)
    check_alias(alias)
    try:
        with _lock(root):
            target = resolve_version(root, version)
            verify_bundle(root / target)
            return _switch(root, alias, target, "set")
    except Timeout:
        raise InvalidInput(f"another deploy holds {root / LOCK_FILE}; try again") from None


def alias_stack(entries: list[dict], current: str | None) -> list[str]:
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
    root = models_root(models_dir)
    check_alias(alias)
    try:
        with _lock(root):
            current = read_aliases(root)[0].get(alias)
            stack = alias_stack(alias_history(root, alias), current)
            if current is None or len(stack) < 2:
                raise ModelNotFound(f"alias {alias!r} has no previous version to roll back to")
            previous = stack[-2]
            if not (root / previous / MANIFEST).is_file():
                raise _not_found(root, f"previous {alias} version {previous} no longer exists")
            verify_bundle(root / previous)
            return _switch(root, alias, previous, "rollback")
    except Timeout:
        raise InvalidInput(f"another deploy holds {root / LOCK_FILE}; try again") from None
