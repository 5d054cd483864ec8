"""The model store behind one interface: the local directory (default) or the shared database.

``open_model_store(models_dir, url)`` gives a ``LocalStore`` (MODELS_DIR is the store, as it always was)
or, with ``MODEL_STORE_URL``, a ``sql_store.SqlStore`` (MODELS_DIR then holds each process's
verified local copies). Both answer the same calls, and everything that trains, deploys or serves
goes through them: ``allocate``/``publish`` (a new version), ``fetch`` (a verified local copy to
load from), ``aliases``/``alias_token``/``set_alias``/``rollback``/``history``, ``resolve``,
``list_versions``.
"""

from __future__ import annotations

from pathlib import Path

from crypto_predictor.config import Config
from crypto_predictor.registry import aliases as _aliases
from crypto_predictor.registry.bundle import load_manifest
from crypto_predictor.registry.catalog import Summaries, list_versions
from crypto_predictor.registry.versions import allocate_version, available_versions, models_root


class LocalStore:
    shared = False

    def __init__(self, root):
        self.root = Path(root)
        self._summaries = Summaries()

    def describe(self) -> str:
        return f"local store {self.root.name}/"

    def allocate(self) -> tuple[str, Path]:
        return allocate_version(self.root)

    def publish(self, version: str) -> dict:
        return {"version": version, "pushed": False, "uploaded": 0}  # already where every reader looks

    def fetch(self, version_or_alias: str) -> Path:
        return self.root / self.resolve(version_or_alias)

    def resolve(self, version_or_alias: str) -> str:
        return _aliases.resolve_version(self.root, version_or_alias)

    def available_versions(self) -> list[str]:
        return available_versions(self.root)

    def list_versions(self, verify: bool = False, metrics: bool = True) -> list[dict]:
        return list_versions(self.root, verify=verify, metrics=metrics, summaries=self._summaries)

    def load_manifest(self, version: str) -> dict:
        return load_manifest(self.fetch(version))

    def aliases(self) -> dict:
        return _aliases.get_aliases(self.root)

    def read_aliases(self) -> tuple[dict, str | None]:
        return _aliases.read_aliases(self.root)

    def alias_token(self) -> str | None:
        return _aliases.alias_state_token(self.root)

    def history(self, alias: str | None = None) -> list[dict]:
        return _aliases.alias_history(self.root, alias)

    def set_alias(self, alias: str, version: str) -> dict:
        return _aliases.set_alias(self.root, alias, version)

    def rollback(self, alias: str = "production") -> dict:
        return _aliases.rollback(self.root, alias)


def open_model_store(models_dir=None, url: str | None = None):
    """The store for ``models_dir`` (default MODELS_DIR); shared when ``url`` (default MODEL_STORE_URL) is set."""
    url = Config().MODEL_STORE_URL if url is None else url
    root = models_root(models_dir)
    if not url:
        return LocalStore(root)
    from crypto_predictor.registry.sql_store import SqlStore

    return SqlStore(url, root)
