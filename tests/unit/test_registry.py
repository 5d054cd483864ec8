"""Model store: version allocation, manifests, integrity checks, aliases and rollback."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crypto_predictor
from crypto_predictor.registry import versions
from crypto_predictor.registry.aliases import (ALIASES, alias_history, alias_state_token, get_aliases, rollback,
                                               set_alias)
from crypto_predictor.registry.bundle import BundleWriter, verify_bundle
from crypto_predictor.registry.catalog import list_versions, open_bundle
from crypto_predictor.registry.versions import allocate_version, available_versions, sort_versions, version_number
from crypto_predictor.errors import BundleIntegrityError, InvalidInput, ModelNotFound

REPO = Path(__file__).resolve().parents[2]

FILES = {
    "bitcoin/24h/xgboost/model.json": b'{"trees": [1, 2, 3]}',
    "bitcoin/24h/scaler.pkl": pickle.dumps({"mean": 1.5, "std": 0.25}),
    "ethereum/1h/linear/coef.npy": bytes(range(256)) * 4,
    "features.json": b'["rsi_14", "macd"]',
}


def make_bundle(models_dir, files=FILES, metrics=None, **extra) -> str:
    writer = BundleWriter(models_dir)
    for rel, data in files.items():
        writer.write_bytes(rel, data)
    writer.finalize(assets=["bitcoin", "ethereum"], timeframes=["1h", "24h"],
                    kinds=["xgboost", "linear"], features=["rsi_14", "macd"],
                    metrics=metrics or {}, extra=extra or None,
                    data_range={"start": "2020-01-01T00:00:00Z", "end": "2021-09-30T23:00:00Z"})
    return writer.version


def flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- versions

def test_versions_sort_numerically_and_only_vN_names_count():
    assert sort_versions(["v10", "v9", "v1", "v2"]) == ["v1", "v2", "v9", "v10"]
    assert [version_number(n) for n in ("v12", "v0", "v01", "x3", "v", "v3a", None)] == \
        [12, None, None, None, None, None, None]


def test_allocation_continues_after_the_highest_version(tmp_path):
    for name in ("v9", "v01", "scratch"):
        (tmp_path / name).mkdir()
    (tmp_path / "v50").write_text("a file, not a bundle")
    assert allocate_version(tmp_path) == ("v10", tmp_path / "v10")
    assert allocate_version(tmp_path)[0] == "v11"


def test_allocation_retries_when_another_writer_wins_the_race(tmp_path, monkeypatch):
    # A stale directory scan (the other writer created v1 after we looked) must not reuse v1.
    (tmp_path / "v1").mkdir()
    monkeypatch.setattr(versions, "version_dirs", lambda root: [])
    assert allocate_version(tmp_path)[0] == "v2"


def test_concurrent_allocation_in_threads_gives_unique_ids(tmp_path):
    rounds, workers = 3, 8
    barrier = threading.Barrier(workers)
    got, errors = [], []

    def work():
        try:
            for _ in range(rounds):
                barrier.wait()
                got.append(allocate_version(tmp_path)[0])
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(got, key=version_number) == [f"v{i}" for i in range(1, rounds * workers + 1)]


_CHILD = """
import os, sys, time
from pathlib import Path
from crypto_predictor.registry.versions import allocate_version
root, go, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
(go.parent / f"ready-{me}").touch()
while not go.exists():
    time.sleep(0.001)
print(allocate_version(root)[0])
"""


def test_concurrent_allocation_in_processes_gives_unique_ids(tmp_path):
    store, sync = tmp_path / "store", tmp_path / "sync"
    sync.mkdir()
    go = sync / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(store), str(go), str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    try:
        deadline = time.monotonic() + 30
        while len(list(sync.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # release every process at once
        outputs = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == sorted(f"v{i}" for i in range(1, 9))


# ---------------------------------------------------------------- writing and manifest

def test_manifest_has_every_field_and_correct_hashes(tmp_path):
    tf_was_loaded = "tensorflow" in sys.modules
    leaf = {"mase": np.float64(0.97), "mae": float("nan")}
    metrics = {"overall": {"bitcoin": {"24h": {"xgboost": leaf}}},
               "folds": [{"fold": 0, "mase": 0.99}, {"fold": 1, "mase": 0.95}]}
    version = make_bundle(tmp_path, metrics=metrics, trained_on=pd.Timestamp("2021-09-30", tz="UTC"))
    manifest = json.loads((tmp_path / version / "manifest.json").read_text())

    assert manifest["version"] == version == "v1"
    created = dt.datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00"))
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert manifest["code"]["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert manifest["code"]["git_dirty"] in ((True, False) if head.returncode == 0 else (None,))
    assert manifest["code"]["package_version"] == crypto_predictor.__version__
    assert manifest["python"] == sys.version.split()[0]
    libs = manifest["libraries"]
    assert libs["numpy"] == np.__version__ and libs["pandas"] == pd.__version__
    assert libs["scikit-learn"] and libs["xgboost"] and "tensorflow" in libs
    if not tf_was_loaded:
        assert "tensorflow" not in sys.modules, "library versions must not import TensorFlow"
    assert manifest["assets"] == ["bitcoin", "ethereum"] and manifest["timeframes"] == ["1h", "24h"]
    assert manifest["kinds"] == ["xgboost", "linear"] and manifest["features"] == ["rsi_14", "macd"]
    assert manifest["data_range"]["end"] == "2021-09-30T23:00:00Z"
    overall = manifest["metrics"]["overall"]["bitcoin"]["24h"]["xgboost"]
    assert overall == {"mase": 0.97, "mae": None}  # numpy float made plain; NaN is not valid JSON
    assert manifest["metrics"]["folds"][1]["mase"] == 0.95
    assert manifest["extra"]["trained_on"].startswith("2021-09-30T00:00:00")
    assert manifest["files"] == {rel: hashlib.sha256(data).hexdigest() for rel, data in FILES.items()}
    assert verify_bundle(tmp_path / version) == manifest
    assert not [p for p in (tmp_path / version).iterdir() if ".tmp" in p.name]


def test_writer_refuses_paths_outside_the_bundle_and_the_manifest_name(tmp_path):
    writer = BundleWriter(tmp_path)
    for bad in ("../evil.pkl", "/etc/passwd", "manifest.json", "a/../../b"):
        with pytest.raises(InvalidInput):
            writer.path_for(bad)
    with pytest.raises(InvalidInput, match="no artifact files"):
        writer.finalize()
    writer.write_bytes("ok.bin", b"x")
    writer.finalize()
    with pytest.raises(InvalidInput, match="finalized"):
        writer.path_for("late.bin")


def test_unfinished_bundle_is_never_listed_or_opened_and_failed_writer_cleans_up(tmp_path):
    done = make_bundle(tmp_path)
    pending = BundleWriter(tmp_path)  # a training still running
    pending.write_bytes("model.bin", b"half")
    assert available_versions(tmp_path) == [done]
    assert [r["version"] for r in list_versions(tmp_path)] == [done]
    with pytest.raises(ModelNotFound):
        open_bundle(tmp_path, pending.version)
    with pytest.raises(BundleIntegrityError, match="incomplete"):
        verify_bundle(pending.path)

    with pytest.raises(RuntimeError):
        with BundleWriter(tmp_path) as crashed:
            crashed.write_bytes("model.bin", b"x")
            raise RuntimeError("training failed")
    assert not crashed.path.exists()


# ---------------------------------------------------------------- integrity

@pytest.mark.parametrize("rel", sorted(FILES))
def test_flipping_one_byte_of_any_artifact_is_refused(tmp_path, rel):
    version = make_bundle(tmp_path)
    flip_byte(tmp_path / version / rel, offset=len(FILES[rel]) // 2)
    with pytest.raises(BundleIntegrityError) as info:
        open_bundle(tmp_path, version)
    assert rel in info.value.message and info.value.details["file"] == rel


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["EVIL_MARKER"]),))


def test_swapped_pickle_is_refused_before_anything_is_unpickled(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    version = make_bundle(tmp_path / "store")
    (tmp_path / "store" / version / "bitcoin/24h/scaler.pkl").write_bytes(pickle.dumps(_Evil()))

    def load_scaler():
        bundle = open_bundle(tmp_path / "store", version)
        return pickle.loads(bundle.read_bytes("bitcoin", "24h", "scaler.pkl"))

    with pytest.raises(BundleIntegrityError, match="scaler.pkl"):
        load_scaler()
    assert not marker.exists()


def test_change_after_opening_is_caught_by_read_bytes(tmp_path):
    version = make_bundle(tmp_path)
    bundle = open_bundle(tmp_path, version)
    assert pickle.loads(bundle.read_bytes("bitcoin/24h/scaler.pkl")) == {"mean": 1.5, "std": 0.25}
    flip_byte(bundle.artifact("bitcoin/24h/scaler.pkl"))
    with pytest.raises(BundleIntegrityError):
        bundle.read_bytes("bitcoin/24h/scaler.pkl")


def test_added_removed_linked_or_renamed_files_are_refused(tmp_path):
    version = make_bundle(tmp_path)
    root = tmp_path / version

    (root / "bitcoin/24h/extra.pkl").write_bytes(b"smuggled")
    with pytest.raises(BundleIntegrityError, match="not in manifest: bitcoin/24h/extra.pkl"):
        open_bundle(tmp_path, version)
    (root / "bitcoin/24h/extra.pkl").unlink()

    (root / "features.json").unlink()
    with pytest.raises(BundleIntegrityError, match="missing: features.json"):
        verify_bundle(root)
    (root / "features.json").write_bytes(FILES["features.json"])
    verify_bundle(root)

    (root / "link.json").symlink_to(root / "features.json")
    with pytest.raises(BundleIntegrityError, match="symlink"):
        verify_bundle(root)
    (root / "link.json").unlink()

    # A bundle copied under another version name is not that version.
    copy = tmp_path / "v7"
    copy.mkdir()
    for rel in [*FILES, "manifest.json"]:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes((root / rel).read_bytes())
    with pytest.raises(BundleIntegrityError, match="manifest says version 'v1'"):
        open_bundle(tmp_path, "v7")

    (root / "manifest.json").write_text("{not json")
    with pytest.raises(BundleIntegrityError, match="unreadable"):
        open_bundle(tmp_path, version)


def test_open_bundle_helpers(tmp_path):
    make_bundle(tmp_path)
    bundle = open_bundle(tmp_path, "v1")
    assert bundle.version == "v1" and bundle.path == tmp_path / "v1"
    model = "bitcoin/24h/xgboost/model.json"
    assert bundle.artifact("bitcoin", "24h", "xgboost", "model.json") == tmp_path / "v1" / model
    assert bundle.artifacts("bitcoin", "24h") == ["bitcoin/24h/scaler.pkl", model]
    assert bundle.has("features.json") and not bundle.has("solana/1h/model.pkl")
    assert bundle.read_json("features.json") == ["rsi_14", "macd"]
    with pytest.raises(ModelNotFound, match="solana/1h/model.pkl"):
        bundle.artifact("solana", "1h", "model.pkl")
    with pytest.raises(InvalidInput):
        bundle.artifact("..", "v2", "x")


def test_unknown_version_or_unset_alias_lists_available_versions(tmp_path):
    make_bundle(tmp_path)
    make_bundle(tmp_path)
    for name in ("v3", "v02", "latest", "../v1"):
        with pytest.raises(ModelNotFound) as info:
            open_bundle(tmp_path, name)
        assert "available versions: v1, v2" in info.value.message
        assert info.value.details["available"] == ["v1", "v2"]
    with pytest.raises(ModelNotFound, match="alias 'production' is not set"):
        open_bundle(tmp_path, "production")
    with pytest.raises(ModelNotFound, match="available versions: none"):
        open_bundle(tmp_path / "empty", "v1")


# ---------------------------------------------------------------- aliases

def test_alias_switch_history_and_rollback(tmp_path):
    for _ in range(3):
        make_bundle(tmp_path)
    assert get_aliases(tmp_path) == {} and alias_state_token(tmp_path) is None

    set_alias(tmp_path, "production", "v1")
    token1 = alias_state_token(tmp_path)
    entry = set_alias(tmp_path, "production", "v2")
    assert (entry["from"], entry["to"], entry["action"]) == ("v1", "v2", "set")
    assert alias_state_token(tmp_path) != token1
    set_alias(tmp_path, "production", "v3")
    set_alias(tmp_path, "challenger", "v1")
    assert get_aliases(tmp_path) == {"production": "v3", "challenger": "v1"}
    assert open_bundle(tmp_path, "production").version == "v3"

    assert rollback(tmp_path)["to"] == "v2"
    assert rollback(tmp_path, "production")["to"] == "v1"  # keeps walking back
    assert get_aliases(tmp_path) == {"production": "v1", "challenger": "v1"}
    with pytest.raises(ModelNotFound, match="no previous version"):
        rollback(tmp_path)
    with pytest.raises(ModelNotFound, match="no previous version"):
        rollback(tmp_path, "challenger")

    set_alias(tmp_path, "production", "v3")
    assert rollback(tmp_path)["to"] == "v1"

    history = alias_history(tmp_path)
    assert [(h["alias"], h["from"], h["to"], h["action"]) for h in history] == [
        ("production", None, "v1", "set"), ("production", "v1", "v2", "set"),
        ("production", "v2", "v3", "set"), ("challenger", None, "v1", "set"),
        ("production", "v3", "v2", "rollback"), ("production", "v2", "v1", "rollback"),
        ("production", "v1", "v3", "set"), ("production", "v3", "v1", "rollback")]
    assert all(dt.datetime.fromisoformat(h["time"].replace("Z", "+00:00")) for h in history)
    # The file on disk is one JSON object per line, append-only.
    lines = (tmp_path / "alias_history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history


def test_no_op_switch_changes_nothing(tmp_path):
    make_bundle(tmp_path)
    set_alias(tmp_path, "production", "v1")
    token = alias_state_token(tmp_path)
    entry = set_alias(tmp_path, "production", "v1")
    assert entry["from"] == entry["to"] == "v1"
    assert alias_state_token(tmp_path) == token and len(alias_history(tmp_path)) == 1


def test_promote_challenger_by_alias_name(tmp_path):
    make_bundle(tmp_path)
    make_bundle(tmp_path)
    set_alias(tmp_path, "production", "v1")
    set_alias(tmp_path, "challenger", "v2")
    assert set_alias(tmp_path, "production", "challenger")["to"] == "v2"
    assert get_aliases(tmp_path) == {"production": "v2", "challenger": "v2"}


def test_alias_to_unknown_incomplete_or_tampered_version_is_refused(tmp_path):
    make_bundle(tmp_path)
    make_bundle(tmp_path)
    set_alias(tmp_path, "production", "v1")
    before = (tmp_path / "aliases.json").read_bytes()
    pending = BundleWriter(tmp_path)
    pending.write_bytes("m.bin", b"x")

    with pytest.raises(ModelNotFound, match="available versions: v1, v2"):
        set_alias(tmp_path, "production", "v9")
    with pytest.raises(ModelNotFound):
        set_alias(tmp_path, "production", pending.version)
    with pytest.raises(InvalidInput, match="valid aliases: production, challenger"):
        set_alias(tmp_path, "staging", "v2")
    flip_byte(tmp_path / "v2" / "features.json")
    with pytest.raises(BundleIntegrityError, match="features.json"):
        set_alias(tmp_path, "production", "v2")
    assert (tmp_path / "aliases.json").read_bytes() == before
    assert len(alias_history(tmp_path)) == 1


def test_rollback_refuses_a_previous_version_that_was_tampered_with(tmp_path):
    make_bundle(tmp_path)
    make_bundle(tmp_path)
    set_alias(tmp_path, "production", "v1")
    set_alias(tmp_path, "production", "v2")
    flip_byte(tmp_path / "v1" / "features.json")
    with pytest.raises(BundleIntegrityError):
        rollback(tmp_path)
    assert get_aliases(tmp_path)["production"] == "v2"


def test_rollback_trusts_the_alias_file_when_history_lost_its_last_line(tmp_path):
    for _ in range(3):
        make_bundle(tmp_path)
    set_alias(tmp_path, "production", "v1")
    set_alias(tmp_path, "production", "v2")
    set_alias(tmp_path, "production", "v3")
    history = tmp_path / "alias_history.jsonl"
    lines = history.read_text().splitlines()
    history.write_text("\n".join(lines[:-1]) + '\n{"torn')  # crash between the two writes
    assert rollback(tmp_path)["to"] == "v2"
    # The torn line stays unreadable, but the new entry was not glued onto it.
    assert [(h["from"], h["to"]) for h in alias_history(tmp_path)] == \
        [(None, "v1"), ("v1", "v2"), ("v3", "v2")]


def test_concurrent_alias_writers_keep_the_files_consistent(tmp_path):
    for _ in range(3):
        make_bundle(tmp_path)
    workers, rounds = 8, 6
    barrier = threading.Barrier(workers)
    entries, errors = [], []

    def work(i):
        try:
            barrier.wait()
            for r in range(rounds):
                alias = ALIASES[(i + r) % 2]
                entries.append(set_alias(tmp_path, alias, f"v{(i * r) % 3 + 1}"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    aliases = json.loads((tmp_path / "aliases.json").read_text())
    assert set(aliases) <= set(ALIASES)
    assert all(v in ("v1", "v2", "v3") for v in aliases.values())
    history = alias_history(tmp_path)
    assert len(history) == sum(e["from"] != e["to"] for e in entries)  # no change lost or duplicated
    for alias in ALIASES:  # each change starts where the previous one ended
        chain = [h for h in history if h["alias"] == alias]
        assert all(a["to"] == b["from"] for a, b in zip(chain, chain[1:]))
        assert not chain or chain[-1]["to"] == aliases[alias]


# ---------------------------------------------------------------- listing

def test_list_versions_in_numeric_order_with_metrics_and_aliases(tmp_path):
    overall = {"bitcoin": {"24h": {"xgboost": {"mase": 0.97, "directional_accuracy": 0.53}}}}
    for i in range(10):
        metrics = {"overall": overall} if i == 9 else None
        make_bundle(tmp_path, files={"m.bin": bytes([i])}, metrics=metrics)
    BundleWriter(tmp_path).write_bytes("m.bin", b"x")  # v11, still training
    set_alias(tmp_path, "production", "v9")
    set_alias(tmp_path, "challenger", "v10")

    rows = list_versions(tmp_path)
    assert [r["version"] for r in rows] == [f"v{i}" for i in range(1, 11)]
    assert rows[-1]["metrics"] == overall and rows[0]["metrics"] == {}
    assert rows[8]["aliases"] == ["production"] and rows[9]["aliases"] == ["challenger"]
    assert all(r["created_at"].endswith("Z") and r["status"] == "ok" for r in rows)

    flip_byte(tmp_path / "v3" / "m.bin")
    assert list_versions(tmp_path)[2]["status"] == "ok"  # cheap listing does not hash
    statuses = {r["version"]: r["status"] for r in list_versions(tmp_path, verify=True)}
    assert "sha256 mismatch for m.bin" in statuses["v3"]
    assert {v for v, s in statuses.items() if s != "ok"} == {"v3"}
    assert list_versions(tmp_path / "missing") == []


def test_models_dir_defaults_to_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "store"))
    with BundleWriter() as writer:
        writer.write_bytes("m.bin", b"x")
        writer.finalize()
    assert writer.path == tmp_path / "store" / "v1"
    assert open_bundle(None, "v1").version == "v1"


def test_the_headline_is_each_pairs_served_skill_and_skips_what_it_cannot_read():
    from crypto_predictor.registry.headline import headline

    served = {"mase": 1.0, "n": 500, "directional_accuracy": 0.5, "coverage_80": 0.8, "coverage_95": 0.95,
              "interval_score_80": 0.02, "interval_score_95": 0.03}
    overall = {"bitcoin": {"1h": {"served": served, "baseline_quantile": {"interval_score_80": 0.025,
                                                                          "interval_score_95": 0.04},
                                  "linear": {"mase": 0.9}},
                           "24h": {"linear": {"mase": 0.97}}},  # no served row: left out
               "ethereum": "not a table"}
    found = headline(overall)
    assert list(found) == ["bitcoin"] and list(found["bitcoin"]) == ["1h"]
    assert found["bitcoin"]["1h"]["mase"] == 1.0 and not found["bitcoin"]["1h"]["beats_naive"]
    assert found["bitcoin"]["1h"]["interval_score_ratio_80"] == pytest.approx(0.8)
    assert found["bitcoin"]["1h"]["interval_score_ratio_95"] == pytest.approx(0.75)
    assert headline(None) == {} and headline([1, 2]) == {}
