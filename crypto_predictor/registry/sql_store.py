"""The shared model store: bundles and aliases in a database every instance and job reaches.

Selected by ``MODEL_STORE_URL`` (PostgreSQL in production; any SQLAlchemy URL works, SQLite
included). Each bundle file is one blob keyed by its sha256, so a global model saved under every
asset, or unchanged between versions, is stored once. A version is allocated by inserting its
number (the insert that wins owns it), and becomes visible to readers only when pushed whole
(``publish``: blobs first, then its files and manifest in one transaction).

Readers never load from the database: ``fetch`` writes a version into the process's local
directory (``root``, MODELS_DIR) through a temporary folder, checks every blob against its sha256
and the finished copy with ``verify_bundle``, and only then renames it into place. Aliases and
their history are rows; every change first bumps the one ``model_store_state`` revision, which
serialises writers on PostgreSQL (row lock) and SQLite (write lock) alike and is what workers poll.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crypto_predictor.errors import BundleIntegrityError, CryptoPredictorError, InvalidInput, ModelNotFound, \
    ModelStoreUnavailable
from crypto_predictor.registry.aliases import ALIASES, alias_stack, check_alias, current_user
from crypto_predictor.registry.bundle import relpath, verify_bundle
from crypto_predictor.registry.catalog import Summaries, listing_row
from crypto_predictor.registry.versions import MANIFEST, version_dirs, version_number
from crypto_predictor.storage.engine import make_engine
from crypto_predictor.storage.tables import (MODEL_STORE_TABLES, metadata, model_alias_history, model_aliases,
                                             model_blobs, model_files, model_store_state, model_versions)
from crypto_predictor.timeutil import utcnow_iso

PULL_DIR = ".pull"  # under root: half-written copies, never a version directory
_STATE_ID = 1


def public_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class SqlStore:
    shared = True

    def __init__(self, url: str, root, engine=None):
        self.url = url
        self.root = Path(root)
        self.engine = engine if engine is not None else make_engine(url)
        self._created = False
        self._summaries = Summaries()

    def describe(self) -> str:
        return f"shared store {public_url(self.url)} (local copies in {self.root.name}/)"

    # ---------------------------------------------------------------- plumbing

    @contextmanager
    def _db(self, begin: bool = False):
        """A connection (a transaction with ``begin``); a database failure is ModelStoreUnavailable."""
        try:
            if not self._created:
                self._create()
            with (self.engine.begin() if begin else self.engine.connect()) as conn:
                yield conn
        except CryptoPredictorError:
            raise
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            raise ModelStoreUnavailable(f"model store {public_url(self.url)} unavailable: {reason}") from None

    def _create(self) -> None:
        try:
            metadata.create_all(self.engine, tables=list(MODEL_STORE_TABLES), checkfirst=True)
        except SQLAlchemyError:  # another process created them between the check and the create
            metadata.create_all(self.engine, tables=list(MODEL_STORE_TABLES), checkfirst=True)
        with self.engine.begin() as conn:
            if conn.execute(select(model_store_state.c.id)).first() is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(model_store_state).values(id=_STATE_ID, revision=0))
                except IntegrityError:
                    pass  # another process created it first
        self._created = True

    def _ready(self, conn) -> dict:
        """version -> manifest sha256 of every pushed version."""
        rows = conn.execute(select(model_versions.c.version, model_versions.c.manifest_sha256)
                            .where(model_versions.c.state == "ready")).all()
        return {v: sha for v, sha in rows}

    def available_versions(self) -> list[str]:
        with self._db() as conn:
            return sorted(self._ready(conn), key=version_number)

    def _not_found(self, what: str) -> ModelNotFound:
        versions = self.available_versions()
        return ModelNotFound(f"{what}; available versions: {', '.join(versions) or 'none'}", available=versions)

    # ---------------------------------------------------------------- versions

    def allocate(self) -> tuple[str, Path]:
        """Reserve the next version number in the database, then its local directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(1000):
            local = version_dirs(self.root)
            with self._db() as conn:
                top = conn.execute(select(func.max(model_versions.c.number))).scalar() or 0
            number = max(top, version_number(local[-1]) if local else 0) + 1
            try:
                with self._db(begin=True) as conn:
                    conn.execute(insert(model_versions).values(number=number, version=f"v{number}", state="allocated",
                                                               allocated_at=_now()))
            except IntegrityError:
                continue  # another writer won this number
            path = self.root / f"v{number}"
            try:
                os.mkdir(path)
            except FileExistsError:
                continue  # a local directory the scan missed: the number stays reserved, unused
            return path.name, path
        raise RuntimeError(f"could not allocate a version in {self.describe()}")

    def publish(self, version: str) -> dict:
        """Push a finished local bundle; idempotent. Refuses a different bundle under a taken name."""
        path = self.root / version
        if version_number(version) is None or not (path / MANIFEST).is_file():
            raise ModelNotFound(f"no finished bundle {version!r} in {self.root.name}/ to push")
        manifest = verify_bundle(path)
        raw = (path / MANIFEST).read_bytes()
        manifest_sha = hashlib.sha256(raw).hexdigest()
        with self._db() as conn:
            row = conn.execute(select(model_versions.c.state, model_versions.c.manifest_sha256)
                               .where(model_versions.c.version == version)).first()
        if row is not None and row.state == "ready":
            if row.manifest_sha256 == manifest_sha:
                return {"version": version, "pushed": False, "uploaded": 0}
            raise InvalidInput(f"{version} in the shared store is a different bundle; train against the shared "
                               "store (MODEL_STORE_URL) to get a fresh version")
        uploaded = self._upload(path, manifest["files"])
        with self._db(begin=True) as conn:
            values = dict(state="ready", pushed_at=_now(), manifest=raw.decode("utf-8"), manifest_sha256=manifest_sha)
            if row is None:
                conn.execute(insert(model_versions).values(number=version_number(version), version=version,
                                                           allocated_at=_now(), **values))
            else:
                conn.execute(update(model_versions).where(model_versions.c.version == version).values(**values))
            conn.execute(model_files.delete().where(model_files.c.version == version))
            conn.execute(insert(model_files), [{"version": version, "path": rel, "sha256": sha}
                                               for rel, sha in sorted(manifest["files"].items())])
        return {"version": version, "pushed": True, "uploaded": uploaded}

    def _upload(self, path: Path, files: dict) -> int:
        """Store the blobs the database lacks, one at a time (memory stays one file); returns how many."""
        with self._db() as conn:
            have = set(conn.execute(select(model_blobs.c.sha256)
                                    .where(model_blobs.c.sha256.in_(sorted(set(files.values()))))).scalars())
        uploaded = 0
        for rel, sha in sorted(files.items()):
            if sha in have:
                continue
            data = (path / rel).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise BundleIntegrityError(f"bundle {path.name}: {rel} changed while it was pushed", file=rel)
            try:
                with self._db(begin=True) as conn:
                    conn.execute(insert(model_blobs).values(sha256=sha, size=len(data), data=data))
            except IntegrityError:
                pass  # the same content pushed by another process meanwhile
            have.add(sha)
            uploaded += 1
        return uploaded

    def fetch(self, version_or_alias: str) -> Path:
        """A verified local copy of a pushed version, pulled when missing; its directory."""
        version = self.resolve(version_or_alias)
        with self._db() as conn:
            row = conn.execute(select(model_versions.c.manifest, model_versions.c.manifest_sha256)
                               .where(model_versions.c.version == version)).one()
        target = self.root / version
        if (target / MANIFEST).is_file():
            if hashlib.sha256((target / MANIFEST).read_bytes()).hexdigest() != row.manifest_sha256:
                raise BundleIntegrityError(f"local {version} is not the bundle the shared store holds under that "
                                           "name; move it away to pull the shared one", file=MANIFEST)
            return target
        if row.manifest is None or hashlib.sha256(row.manifest.encode("utf-8")).hexdigest() != row.manifest_sha256:
            raise BundleIntegrityError(f"bundle {version}: the shared store's manifest is altered", file=MANIFEST)
        self._pull(version, row.manifest)
        return target

    def _pull(self, version: str, manifest_text: str) -> None:
        staging = self.root / PULL_DIR / f"{os.getpid()}-{threading.get_ident()}"
        work = staging / version
        shutil.rmtree(staging, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            files = json.loads(manifest_text)["files"]
            links: dict[str, Path] = {}
            for rel, sha in sorted(files.items()):
                if not _plain_path(rel):  # the rows are not trusted to stay inside the copy
                    raise BundleIntegrityError(f"bundle {version}: the shared store lists a bad path {rel!r}",
                                               file=MANIFEST)
                dest = work / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                if sha in links:  # same content: one copy on disk, as the writer leaves it
                    os.link(links[sha], dest)
                    continue
                with self._db() as conn:
                    data = conn.execute(select(model_blobs.c.data).where(model_blobs.c.sha256 == sha)).scalar()
                if data is None or hashlib.sha256(bytes(data)).hexdigest() != sha:
                    raise BundleIntegrityError(f"bundle {version}: the shared store's copy of {rel} is "
                                               f"{'missing' if data is None else 'altered'}", file=rel)
                dest.write_bytes(bytes(data))
                links[sha] = dest
            (work / MANIFEST).write_text(manifest_text, encoding="utf-8")
            verify_bundle(work)
            self._place(work, self.root / version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _place(work: Path, target: Path) -> None:
        """Rename the verified copy into place; an empty leftover directory is replaced, a copy another
        process placed meanwhile is kept."""
        try:
            target.rmdir()
        except OSError:
            pass  # absent, or not empty
        try:
            os.rename(work, target)
        except OSError:
            if not (target / MANIFEST).is_file():
                raise

    def resolve(self, version_or_alias: str) -> str:
        name = str(version_or_alias).strip()
        if name in ALIASES:
            target = self.aliases().get(name)
            if target is None:
                raise self._not_found(f"alias {name!r} is not set")
            name = target
        with self._db() as conn:
            ready = self._ready(conn)
        if name not in ready:
            raise self._not_found(f"unknown model version or alias {version_or_alias!r}")
        return name

    def list_versions(self, verify: bool = False, metrics: bool = True) -> list[dict]:
        """As ``catalog.list_versions``: pushed versions with created_at, headline metrics and aliases.
        Without ``metrics`` a version's row is read once per manifest (by its sha256)."""
        aliases = self.aliases()
        memo = not (metrics or verify)
        with self._db() as conn:
            known = dict(conn.execute(select(model_versions.c.version, model_versions.c.manifest_sha256)
                                      .where(model_versions.c.state == "ready")).all())
            wanted = [v for v in known if not (memo and self._summaries.has(v, known[v]))]
            texts = dict(conn.execute(select(model_versions.c.version, model_versions.c.manifest)
                                      .where(model_versions.c.version.in_(wanted))).all()) if wanted else {}
        out = []
        for version in sorted(known, key=version_number):
            if not memo:
                out.append(self._row(version, texts.get(version), aliases, verify, metrics))
                continue
            row = self._summaries.row(version, known[version],
                                      lambda v=version: self._row(v, texts.get(v), {}, False, False))
            out.append({**row, "aliases": [a for a in ALIASES if aliases.get(a) == version]})
        if memo:
            self._summaries.keep_only(known)
        return out

    def _row(self, version: str, text: str | None, aliases: dict, verify: bool, metrics: bool) -> dict:
        try:
            manifest = verify_bundle(self.fetch(version)) if verify else json.loads(text or "")
        except (BundleIntegrityError, ValueError) as exc:
            return listing_row(version, self.root / version, aliases, problem=getattr(exc, "message", str(exc)),
                               metrics=metrics)
        return listing_row(version, self.root / version, aliases, manifest, metrics=metrics)

    def load_manifest(self, version_or_alias: str) -> dict:
        """A pushed version's manifest, from its row (nothing pulled; hashes are checked by ``fetch``)."""
        version = self.resolve(version_or_alias)
        with self._db() as conn:
            text = conn.execute(select(model_versions.c.manifest).where(model_versions.c.version == version)).scalar()
        return json.loads(text)

    # ---------------------------------------------------------------- aliases

    def aliases(self) -> dict:
        with self._db() as conn:
            return {a: v for a, v in conn.execute(select(model_aliases.c.alias, model_aliases.c.version)).all()
                    if a in ALIASES}

    def read_aliases(self) -> tuple[dict, str | None]:
        return self.aliases(), None  # rows cannot be half-written: nothing to repair from history

    def alias_token(self) -> str | None:
        """The state revision: one cheap row read, changed by every alias switch."""
        with self._db() as conn:
            revision = conn.execute(select(model_store_state.c.revision)).scalar()
        return None if not revision else f"rev-{revision}"

    def history(self, alias: str | None = None) -> list[dict]:
        h = model_alias_history.c
        query = select(h.time, h.alias, h.from_version, h.to_version, h.action, h.by_user).order_by(h.id)
        if alias is not None:
            query = query.where(h.alias == alias)
        with self._db() as conn:
            rows = conn.execute(query).all()
        return [{"time": r.time, "alias": r.alias, "from": r.from_version, "to": r.to_version, "action": r.action,
                 "user": r.by_user} for r in rows]

    def set_alias(self, alias: str, version: str) -> dict:
        """Point an alias at a pushed version, verified in a local copy first; returns the history entry."""
        check_alias(alias)
        target = self.resolve(version)
        verify_bundle(self.fetch(target))
        return self._switch(alias, lambda current, _stack: target, "set")

    def rollback(self, alias: str = "production") -> dict:
        """Return an alias to the version before its current one (repeated: keep walking back)."""
        check_alias(alias)

        def previous(current, stack):
            if current is None or len(stack) < 2:
                raise ModelNotFound(f"alias {alias!r} has no previous version to roll back to")
            verify_bundle(self.fetch(stack[-2]))
            return stack[-2]

        return self._switch(alias, previous, "rollback")

    def _switch(self, alias: str, choose, action: str) -> dict:
        """In one transaction: take the state row, read the alias and its history, write the change."""
        with self._db() as conn, conn.begin() as tx:
            conn.execute(update(model_store_state).where(model_store_state.c.id == _STATE_ID)
                         .values(revision=model_store_state.c.revision + 1))
            current = conn.execute(select(model_aliases.c.version).where(model_aliases.c.alias == alias)).scalar()
            h = model_alias_history.c
            entries = [{"alias": alias, "from": f, "to": t, "action": a} for f, t, a in conn.execute(
                select(h.from_version, h.to_version, h.action).where(h.alias == alias).order_by(h.id)).all()]
            target = choose(current, alias_stack(entries, current))
            entry = {"time": utcnow_iso(), "alias": alias, "from": current, "to": target, "action": action,
                     "user": current_user()}
            if current == target:
                tx.rollback()  # nothing changes, so nothing to record and nothing for workers to notice
                return entry
            if current is None:
                conn.execute(insert(model_aliases).values(alias=alias, version=target))
            else:
                conn.execute(update(model_aliases).where(model_aliases.c.alias == alias).values(version=target))
            conn.execute(insert(model_alias_history).values(time=entry["time"], alias=alias, from_version=current,
                                                            to_version=target, action=action, by_user=entry["user"]))
        return entry


def _plain_path(rel) -> bool:
    """A relative POSIX path inside a bundle, not its manifest."""
    try:
        return isinstance(rel, str) and rel != MANIFEST and relpath(rel) == rel
    except InvalidInput:
        return False


def _now() -> datetime:
    return datetime.now(timezone.utc)
