"""Both model store backends answer the same calls the same way: the local directory and the shared
database (SQLite here; tests/integration/test_postgres_model_store.py runs PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from crypto_predictor.errors import BundleIntegrityError, InvalidInput, ModelNotFound, ModelStoreUnavailable
from crypto_predictor.registry.aliases import ALIASES
from crypto_predictor.registry.bundle import BundleWriter, verify_bundle
from crypto_predictor.registry.sql_store import SqlStore
from crypto_predictor.registry.store import LocalStore, open_model_store
from crypto_predictor.registry.versions import version_number
from crypto_predictor.storage.tables import model_blobs
from tests.unit.test_registry import FILES, flip_byte

REPO = Path(__file__).resolve().parents[2]


def make_bundle(store, files=FILES) -> str:
    """A sealed bundle written through ``store`` and pushed to it (a no-op for the local store)."""
    writer = BundleWriter(store=store)
    for rel, data in files.items():
        writer.write_bytes(rel, data)
    writer.finalize(assets=["bitcoin"], timeframes=["1h"], kinds=["linear"], features=["rsi_14"],
                    metrics={"overall": {"bitcoin": {"1h": {"linear": {"mase": 0.99}}}}})
    store.publish(writer.version)
    return writer.version


@pytest.fixture()
def shared_url(tmp_path) -> str:
    """The shared store's database (PostgreSQL in tests/integration/test_postgres_model_store.py)."""
    return f"sqlite:///{tmp_path / 'models.db'}"


@pytest.fixture(params=["local", "sql"])
def store(request, tmp_path, shared_url):
    if request.param == "local":
        return LocalStore(tmp_path / "models")
    return SqlStore(shared_url, tmp_path / "copies")


def other_process_view(store, tmp_path):
    """What another host sees: the same shared database with its own local copies (local: the same dir)."""
    if isinstance(store, LocalStore):
        return LocalStore(store.root)
    return SqlStore(store.url, tmp_path / "other_host")


def test_open_store_picks_the_backend(tmp_path, shared_url):
    assert isinstance(open_model_store(tmp_path, ""), LocalStore)
    shared = open_model_store(tmp_path, shared_url)
    assert isinstance(shared, SqlStore) and shared.root == tmp_path


def test_a_version_pushed_on_one_host_is_fetched_verified_on_another(store, tmp_path):
    version = make_bundle(store)
    other = other_process_view(store, tmp_path)
    assert other.available_versions() == [version]
    path = other.fetch(version)
    manifest = verify_bundle(path)
    assert {rel: (path / rel).read_bytes() for rel in manifest["files"]} == FILES
    assert other.fetch(version) == path  # the second fetch reuses the verified copy
    assert [r["version"] for r in other.list_versions()] == [version]


def test_a_listing_without_metrics_reads_each_manifest_once(store, monkeypatch):
    import json

    from crypto_predictor.registry import catalog, sql_store

    first = make_bundle(store)
    reads = []
    for module in (catalog, sql_store):
        monkeypatch.setattr(module, "listing_row", lambda version, *a, _read=module.listing_row, **k:
                            reads.append(version) or _read(version, *a, **k))
    rows = store.list_versions(metrics=False)
    assert [r["version"] for r in rows] == [first] and rows[0]["assets"] == ["bitcoin"] and "metrics" not in rows[0]
    assert rows[0]["skill"] == {}  # no served forecast's row in this manifest: no headline
    second = make_bundle(store)
    store.set_alias("production", first)
    rows = store.list_versions(metrics=False)
    assert reads == [first, second]  # the first version's manifest was not read again
    assert [r["aliases"] for r in rows] == [["production"], []]  # aliases are read on every call
    assert store.list_versions()[0]["metrics"] == {"bitcoin": {"1h": {"linear": {"mase": 0.99}}}}
    assert reads[2:] == [first, second]  # with metrics nothing is kept
    if isinstance(store, LocalStore):  # a manifest rewritten in place is read again
        path = store.root / first / "manifest.json"
        manifest = json.loads(path.read_text())
        path.write_text(json.dumps({**manifest, "assets": ["bitcoin", "ethereum"]}))
        assert store.list_versions(metrics=False)[0]["assets"] == ["bitcoin", "ethereum"]


def test_identical_files_are_stored_once(tmp_path, shared_url):
    store = SqlStore(shared_url, tmp_path / "copies")
    make_bundle(store)
    second = make_bundle(store, {**FILES, "features.json": b'["rsi_14"]'})
    with store.engine.connect() as conn:
        blobs = conn.execute(select(model_blobs.c.sha256)).scalars().all()
    assert len(blobs) == len(FILES) + 1  # only the changed file added a blob
    assert store.publish(second)["pushed"] is False  # pushing again changes nothing


def test_an_altered_blob_is_refused_and_nothing_is_left_behind(tmp_path, shared_url):
    store = SqlStore(shared_url, tmp_path / "copies")
    version = make_bundle(store)
    sha = hashlib.sha256(FILES["features.json"]).hexdigest()
    with store.engine.begin() as conn:
        conn.execute(update(model_blobs).where(model_blobs.c.sha256 == sha).values(data=b'["evil"]'))
    other = SqlStore(store.url, tmp_path / "other_host")
    with pytest.raises(BundleIntegrityError, match="features.json is altered"):
        other.fetch(version)
    assert not (other.root / version).exists()
    assert not any((other.root / ".pull").iterdir())
    with pytest.raises(BundleIntegrityError):
        other.set_alias("production", version)
    assert other.aliases() == {}


def test_a_tampered_local_copy_is_refused_before_an_alias_moves(store, tmp_path):
    make_bundle(store)
    make_bundle(store)
    store.set_alias("production", "v1")
    flip_byte(store.fetch("v2") / "features.json")
    with pytest.raises(BundleIntegrityError, match="features.json"):
        store.set_alias("production", "v2")
    assert store.aliases() == {"production": "v1"} and len(store.history()) == 1


def test_a_different_bundle_under_a_taken_name_is_refused(tmp_path, shared_url):
    shared = SqlStore(shared_url, tmp_path / "copies")
    make_bundle(shared)
    elsewhere = LocalStore(tmp_path / "laptop")  # trained without the shared store: also v1
    make_bundle(elsewhere, {**FILES, "features.json": b"[]"})
    pusher = SqlStore(shared.url, elsewhere.root)
    with pytest.raises(InvalidInput, match="v1 in the shared store is a different bundle"):
        pusher.publish("v1")
    with pytest.raises(BundleIntegrityError, match="local v1 is not the bundle"):
        pusher.fetch("v1")


def test_alias_switch_history_and_rollback(store):
    for _ in range(3):
        make_bundle(store)
    assert store.aliases() == {} and store.alias_token() is None
    store.set_alias("production", "v1")
    token = store.alias_token()
    assert store.set_alias("production", "v2")["from"] == "v1"
    assert store.alias_token() != token
    store.set_alias("production", "v3")
    store.set_alias("challenger", "v1")
    assert store.rollback()["to"] == "v2"
    assert store.rollback("production")["to"] == "v1"
    with pytest.raises(ModelNotFound, match="no previous version"):
        store.rollback()
    assert store.set_alias("production", "challenger")["to"] == "v1"  # no-op: already v1
    token = store.alias_token()
    store.set_alias("production", "v3")
    assert store.alias_token() != token
    assert store.aliases() == {"production": "v3", "challenger": "v1"}
    assert [(h["alias"], h["from"], h["to"], h["action"]) for h in store.history()] == [
        ("production", None, "v1", "set"), ("production", "v1", "v2", "set"), ("production", "v2", "v3", "set"),
        ("challenger", None, "v1", "set"), ("production", "v3", "v2", "rollback"),
        ("production", "v2", "v1", "rollback"), ("production", "v1", "v3", "set")]
    token = store.alias_token()
    store.set_alias("production", "v3")
    assert store.alias_token() == token and len(store.history()) == 7  # a no-op records nothing


def test_unknown_versions_and_aliases_list_what_exists(store):
    make_bundle(store)
    with pytest.raises(ModelNotFound, match="available versions: v1"):
        store.set_alias("production", "v9")
    with pytest.raises(ModelNotFound, match="alias 'production' is not set"):
        store.resolve("production")
    with pytest.raises(InvalidInput, match="valid aliases"):
        store.set_alias("staging", "v1")


def test_concurrent_alias_writers_lose_and_duplicate_nothing(store):
    for _ in range(3):
        make_bundle(store)
    workers, rounds = 6, 5
    barrier = threading.Barrier(workers)
    entries, errors = [], []

    def work(i):
        try:
            barrier.wait()
            for r in range(rounds):
                entries.append(store.set_alias(ALIASES[(i + r) % 2], f"v{(i * r) % 3 + 1}"))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    history = store.history()
    assert len(history) == sum(e["from"] != e["to"] for e in entries)
    aliases = store.aliases()
    for alias in ALIASES:
        chain = [h for h in history if h["alias"] == alias]
        assert all(a["to"] == b["from"] for a, b in zip(chain, chain[1:]))
        assert not chain or chain[-1]["to"] == aliases[alias]


_CHILD = """
import sys, time
from pathlib import Path
from crypto_predictor.registry.store import open_model_store
url, root, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
(go.parent / f"ready-{root.name}").touch()
while not go.exists():
    time.sleep(0.001)
print(open_model_store(root, url).allocate()[0])
"""


def test_hosts_with_their_own_directories_never_get_the_same_version(tmp_path, shared_url):
    """Eight processes, each with its own local directory, allocate at once from one shared store."""
    url, sync = shared_url, tmp_path / "sync"
    sync.mkdir()
    SqlStore(url, tmp_path / "first").available_versions()  # the tables exist before the race
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, url, str(tmp_path / f"host{i}"), str(sync / "go")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
            time.sleep(0.01)
        (sync / "go").touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outputs]
    assert sorted((out.strip() for out, _ in outputs), key=version_number) == [f"v{i}" for i in range(1, 9)]


def test_an_unreachable_store_is_a_clear_error(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'models.db'}", tmp_path / "copies")
    started = time.monotonic()
    with pytest.raises(ModelStoreUnavailable, match="model store sqlite:///.*unavailable"):
        store.alias_token()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("bad", ["../escaped.txt", "/abs.txt", "a/../../b", "manifest.json"])
def test_an_altered_manifest_row_or_a_path_outside_the_copy_is_refused(tmp_path, shared_url, bad):
    import json

    from crypto_predictor.storage.tables import model_versions

    store = SqlStore(shared_url, tmp_path / "copies")
    version = make_bundle(store)
    with store.engine.begin() as conn:
        text = conn.execute(select(model_versions.c.manifest)).scalar()
        manifest = json.loads(text)
        manifest["files"][bad] = manifest["files"]["features.json"]
        altered = json.dumps(manifest)
        conn.execute(update(model_versions).values(manifest=altered))
    other = SqlStore(shared_url, tmp_path / "host" / "models")
    with pytest.raises(BundleIntegrityError, match="manifest is altered"):
        other.fetch(version)
    with store.engine.begin() as conn:  # its hash rewritten too: the path itself is refused
        conn.execute(update(model_versions).values(manifest_sha256=hashlib.sha256(altered.encode()).hexdigest()))
    with pytest.raises(BundleIntegrityError, match="bad path"):
        other.fetch(version)
    assert not (tmp_path / "host" / "escaped.txt").exists() and not (tmp_path / "abs.txt").exists()
    assert not (other.root / version).exists()
