"""What a worker serves: the production and challenger bundles as one immutable snapshot.

``ModelCache`` swaps the snapshot whole when the aliases change (the alias file, or a shared
store's revision; requests in flight keep the snapshot they took), plus a few explicitly requested
versions; a shared store's version is pulled into a verified local copy before it loads. A bundle that fails to load is
refused, the previous one keeps serving, the failure is kept for health checks and the load is
retried as soon as the refused bundle's files change (a fix), else every ``FAILED_RETRY_SECONDS``.
Every ``CHECK_SECONDS`` the files of the served bundles are stat-ed; when any changed since they
were loaded they are re-hashed, and a deleted or altered bundle is reported (``integrity``) while
the verified copy in memory keeps serving. Error texts kept for health name files, never paths.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crypto_predictor.errors import BundleIntegrityError, ModelStoreUnavailable
from crypto_predictor.registry.bundle import verify_bundle
from crypto_predictor.registry.aliases import ALIASES
from crypto_predictor.registry.store import LocalStore
from crypto_predictor.registry.versions import sort_versions
from crypto_predictor.serving.pairs import LoadedBundle, load_bundle

log = logging.getLogger(__name__)

FAILED_RETRY_SECONDS = 60  # between two load attempts of a refused bundle whose files did not change
CHECK_SECONDS = 10  # between two looks at the served bundles' files
EXTRA_BUNDLES = 2  # explicitly requested versions kept loaded besides production/challenger


_UNSEEN = object()  # a fingerprint no bundle has (a deleted bundle's is None)
_ABSOLUTE_PATH = re.compile(r"(?:/[^/\s'\"():,]+)+/([^/\s'\"():,]+)")


def fingerprint(path: Path) -> tuple | None:
    """(name, size, mtime) of every file under ``path``, sorted; None when it is not there. Cheap
    enough to take every few seconds, and it changes whenever a file is replaced, edited or removed."""
    try:
        out = []
        for dirpath, _, files in os.walk(path):
            for name in files:
                st = os.stat(os.path.join(dirpath, name))
                out.append((os.path.relpath(os.path.join(dirpath, name), path), st.st_size, st.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(out)) if out else None


@dataclass(frozen=True)
class Served:
    """What is served, as one immutable snapshot replaced whole on a swap."""

    token: str | None = None  # alias file hash the snapshot was built from
    aliases: dict = field(default_factory=dict)  # alias -> version actually served
    bundles: dict = field(default_factory=dict)  # version -> LoadedBundle


class ModelCache:
    def __init__(self, models_dir, poll_seconds: float = 2.0, now=None, store=None):
        # ``store``: where aliases and bundles come from (registry.store); bundles load from its local copies
        self.store = store if store is not None else LocalStore(models_dir)
        self.models_dir = Path(self.store.root)
        self.poll_seconds = float(poll_seconds)
        self._now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self.served = Served()
        self.failure: dict | None = None
        self._failed_at = -math.inf
        self._last_poll = -math.inf
        self._extra: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._stamps: dict = {}  # version -> fingerprint of its files when loaded (or last found good)
        self._bad_stamps: dict = {}  # version -> fingerprint of its files when last found altered
        self._failed_stamp = None  # fingerprint of the refused version's files when it was refused
        self._polled_token = self._failed_token = None  # alias file hash now / when the failure happened
        self.integrity: dict = {}  # served version -> what is wrong with its files on disk now
        self._last_check = -math.inf
        self._store_down = False  # the last poll could not read the aliases

    def loaded(self) -> list[str]:
        return sort_versions(set(self.served.bundles) | set(self._extra))

    def refresh(self, force: bool = False) -> bool:
        """Poll the alias file (at most every ``poll_seconds``); load and swap on a change. True if swapped."""
        now = time.monotonic()
        if not force and now - self._last_poll < self.poll_seconds:
            return False
        self._last_poll = now
        try:
            token = self.store.alias_token()
        except (OSError, ModelStoreUnavailable) as exc:  # keep serving what is loaded
            self.record_failure(None, None, exc)
            self._store_down = True
            return False
        self._check_served(now)
        self._polled_token = token
        retry = self.failure is not None and (now - self._failed_at >= FAILED_RETRY_SECONDS or self._store_down
                                              or token != self._failed_token or self._failed_files_changed())
        self._store_down = False  # reachable again: the reload below clears its failure at once
        if not force and token == self.served.token and not retry:
            return False
        if not self._lock.acquire(blocking=force):
            return False  # another thread is loading; this one keeps serving what is there
        try:
            return self._reload(token)
        finally:
            self._lock.release()

    def record_failure(self, alias, version, exc) -> None:
        self.failure = {"alias": alias, "version": version, "error": self.public_error(exc),
                        "at": self._now().isoformat().replace("+00:00", "Z")}
        self._failed_at = time.monotonic()
        self._failed_token = self._polled_token
        self._failed_stamp = (version, fingerprint(self.models_dir / version) if version else None)
        log.error("model %s (%s) refused: %s: %s", version, alias, type(exc).__name__, exc)

    def public_error(self, exc) -> str:
        """``exc`` as text for unauthenticated answers: paths shortened to names inside the store."""
        text = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        text = text.replace(str(self.models_dir.resolve()) + os.sep, "").replace(str(self.models_dir) + os.sep, "")
        return _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)

    def _failed_files_changed(self) -> bool:
        version, stamp = self._failed_stamp or (None, None)
        return version is not None and fingerprint(self.models_dir / version) != stamp

    def _check_served(self, now: float) -> None:
        """Re-hash a served bundle whose files changed since it was loaded; keep what is wrong."""
        if now - self._last_check < CHECK_SECONDS:
            return
        self._last_check = now
        for version in list(self.served.bundles):
            stamp = fingerprint(self.models_dir / version)
            if stamp == self._stamps.get(version, _UNSEEN) or stamp == self._bad_stamps.get(version, _UNSEEN):
                continue  # unchanged since it was last found good (or bad): no need to re-hash
            self._bad_stamps[version] = stamp
            try:
                verify_bundle(self.models_dir / version)
            except (BundleIntegrityError, OSError) as exc:
                problem = f"bundle {version} on disk no longer matches what is served ({self.public_error(exc)}); " \
                          "serving the copy verified at load"
                if self.integrity.get(version) != problem:
                    log.error("%s", problem)
                self.integrity[version] = problem
                continue
            self._stamps[version] = stamp  # touched, same content
            self._bad_stamps.pop(version, None)
            self.integrity.pop(version, None)

    def _reload(self, token) -> bool:
        old = self.served
        try:
            wanted = self.store.aliases()
        except (BundleIntegrityError, ModelStoreUnavailable) as exc:
            self.record_failure(None, None, exc)
            return False
        aliases, bundles, failed = {}, {}, False
        for alias in ALIASES:
            version = wanted.get(alias)
            if version is None:
                continue
            loaded = bundles.get(version) or old.bundles.get(version) or self._extra.get(version)
            if loaded is None:
                try:
                    self.store.fetch(version)  # a shared store's version is pulled and verified here first
                    stamp = fingerprint(self.models_dir / version)
                    loaded = load_bundle(self.models_dir, version)
                    self._stamps[version] = stamp
                except Exception as exc:  # whatever breaks a load (hash, pickle, h5) refuses the bundle
                    self.record_failure(alias, version, exc)
                    failed = True
                    version = old.aliases.get(alias)
                    loaded = old.bundles.get(version)
                    if loaded is None:
                        continue
            aliases[alias], bundles[version] = version, loaded
        if not failed:
            self.failure = None
        self.served = Served(token, aliases, bundles)
        self.integrity = {v: p for v, p in self.integrity.items() if v in bundles}
        if aliases != old.aliases:
            log.info("serving %s", aliases)
        return aliases != old.aliases

    def bundle(self, version: str) -> LoadedBundle:
        """A served bundle, or an explicitly requested one (loaded once, the latest few kept)."""
        served = self.served
        if version in served.bundles:
            return served.bundles[version]
        with self._lock:
            if version not in self._extra:
                self.store.fetch(version)
                self._extra[version] = load_bundle(self.models_dir, version)
                while len(self._extra) > EXTRA_BUNDLES:
                    self._extra.popitem(last=False)
            self._extra.move_to_end(version)
            return self._extra[version]
