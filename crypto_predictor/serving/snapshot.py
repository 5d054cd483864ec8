"""What a worker serves: the production and challenger bundles as one immutable snapshot.

``ModelCache`` swaps the snapshot whole when the alias file changes (requests in flight keep the
snapshot they took), plus a few explicitly requested versions. A bundle that fails to load is
refused, the previous one keeps serving, the failure is kept for health checks and the load is
retried every ``FAILED_RETRY_SECONDS``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crypto_predictor.errors import BundleIntegrityError
from crypto_predictor.registry.aliases import ALIASES, alias_state_token, get_aliases
from crypto_predictor.registry.versions import sort_versions
from crypto_predictor.serving.pairs import LoadedBundle, load_bundle

log = logging.getLogger(__name__)

FAILED_RETRY_SECONDS = 60  # between two load attempts of a refused bundle
EXTRA_BUNDLES = 2  # explicitly requested versions kept loaded besides production/challenger


@dataclass(frozen=True)
class Served:
    """What is served, as one immutable snapshot replaced whole on a swap."""

    token: str | None = None  # alias file hash the snapshot was built from
    aliases: dict = field(default_factory=dict)  # alias -> version actually served
    bundles: dict = field(default_factory=dict)  # version -> LoadedBundle


class ModelCache:
    def __init__(self, models_dir, poll_seconds: float = 2.0, now=None):
        self.models_dir = Path(models_dir)
        self.poll_seconds = float(poll_seconds)
        self._now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self.served = Served()
        self.failure: dict | None = None
        self._failed_at = -math.inf
        self._last_poll = -math.inf
        self._extra: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def loaded(self) -> list[str]:
        return sort_versions(set(self.served.bundles) | set(self._extra))

    def refresh(self, force: bool = False) -> bool:
        """Poll the alias file (at most every ``poll_seconds``); load and swap on a change. True if swapped."""
        now = time.monotonic()
        if not force and now - self._last_poll < self.poll_seconds:
            return False
        self._last_poll = now
        try:
            token = alias_state_token(self.models_dir)
        except OSError as exc:
            self.record_failure(None, None, exc)
            return False
        retry = self.failure is not None and now - self._failed_at >= FAILED_RETRY_SECONDS
        if not force and token == self.served.token and not retry:
            return False
        if not self._lock.acquire(blocking=force):
            return False  # another thread is loading; this one keeps serving what is there
        try:
            return self._reload(token)
        finally:
            self._lock.release()

    def record_failure(self, alias, version, exc) -> None:
        self.failure = {"alias": alias, "version": version, "error": f"{type(exc).__name__}: {exc}",
                        "at": self._now().isoformat().replace("+00:00", "Z")}
        self._failed_at = time.monotonic()
        log.error("model %s (%s) refused: %s", version, alias, self.failure["error"])

    def _reload(self, token) -> bool:
        old = self.served
        try:
            wanted = get_aliases(self.models_dir)
        except BundleIntegrityError as exc:
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
                    loaded = load_bundle(self.models_dir, version)
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
                self._extra[version] = load_bundle(self.models_dir, version)
                while len(self._extra) > EXTRA_BUNDLES:
                    self._extra.popitem(last=False)
            self._extra.move_to_end(version)
            return self._extra[version]
