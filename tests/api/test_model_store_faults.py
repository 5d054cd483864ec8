"""A served bundle deleted or altered on disk, a refused bundle fixed, a corrupt alias file: health and
/models tell the truth (never a filesystem path), the verified copy in memory keeps serving, and
repair takes effect within a poll."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from crypto_predictor.cli.deploy import deploy_command
from crypto_predictor.serving import snapshot
from tests.api.helpers import assert_error

BODY = {"symbol": "bitcoin", "timeframe": "1h"}


@pytest.fixture()
def store_copy(quick_bundle, tmp_path, monkeypatch):
    """A private copy of the model store; the served bundles' files are looked at on every poll."""
    monkeypatch.setattr(snapshot, "CHECK_SECONDS", 0)
    target = tmp_path / "models"
    shutil.copytree(quick_bundle.models_dir, target)
    return target


def _health(client):
    response = client.get("/api/health")
    return response.status_code, response.get_json()


def _no_paths(body, root):
    text = json.dumps(body)
    assert str(root) not in text and "/tmp" not in text, text


def _model_file(root, version):
    return next(p for p in sorted((root / version).rglob("*")) if p.is_file() and p.name != "manifest.json")


def test_an_altered_served_bundle_is_reported_and_recovers_when_restored(make_app, quick_bundle, store_copy):
    client = make_app(MODELS_DIR=str(store_copy), MODEL_POLL_SECONDS=0).test_client()
    assert _health(client)[0] == 200 and client.post("/api/v1/predict", json=BODY).status_code == 200
    victim = _model_file(store_copy, quick_bundle.production)
    original = victim.read_bytes()
    victim.write_bytes(original + b" ")
    status, body = _health(client)
    assert status == 503 and body["checks"]["model"]["ok"] is False
    problem = body["checks"]["model"]["integrity"][quick_bundle.production]
    assert "no longer matches" in problem and victim.name in problem
    _no_paths(body, store_copy)
    assert client.post("/api/v1/predict", json=BODY).status_code == 200  # the verified copy keeps serving
    victim.write_bytes(original)
    status, body = _health(client)
    assert status == 200 and body["checks"]["model"]["integrity"] is None


def test_a_deleted_served_bundle_is_reported(make_app, quick_bundle, store_copy):
    client = make_app(MODELS_DIR=str(store_copy), MODEL_POLL_SECONDS=0).test_client()
    assert _health(client)[0] == 200
    shutil.rmtree(store_copy / quick_bundle.production)
    status, body = _health(client)
    assert status == 503 and quick_bundle.production in body["checks"]["model"]["integrity"]
    _no_paths(body, store_copy)
    assert client.post("/api/v1/predict", json=BODY).status_code == 200


def test_a_refused_bundle_is_loaded_as_soon_as_it_is_fixed(make_app, quick_bundle, store_copy):
    victim = _model_file(store_copy, quick_bundle.production)
    original = victim.read_bytes()
    victim.write_bytes(b"tampered")
    client = make_app(MODELS_DIR=str(store_copy), MODEL_POLL_SECONDS=0).test_client()  # a worker (re)starting now
    status, body = _health(client)
    refused = body["checks"]["model"]["refused"]
    assert status == 503 and refused["version"] == quick_bundle.production and refused["alias"] == "production"
    assert "sha256" in refused["error"] or "hash" in refused["error"]
    _no_paths(body, store_copy)
    assert_error(client.post("/api/v1/predict", json=BODY), 503, "model_unavailable")
    victim.write_bytes(original)  # the fix: no need to wait for the 60 s retry
    status, body = _health(client)
    assert status == 200 and body["checks"]["model"]["refused"] is None
    assert client.post("/api/v1/predict", json=BODY).get_json()["data"]["model_version"] == quick_bundle.production


def test_a_corrupt_alias_file_is_named_and_deploy_repairs_it(make_app, quick_bundle, store_copy):
    client = make_app(MODELS_DIR=str(store_copy), MODEL_POLL_SECONDS=0).test_client()
    assert _health(client)[0] == 200
    (store_copy / "aliases.json").write_text('{"production": "v1", ')  # torn write
    models = client.get("/api/v1/models")
    assert models.status_code == 200
    data = models.get_json()["data"]
    assert "aliases.json is not valid JSON" in data["alias_problem"] and "deploy_model.py" in data["alias_problem"]
    assert data["aliases"] == {"production": quick_bundle.production, "challenger": quick_bundle.challenger}
    status, body = _health(client)  # the old aliases keep serving, but not what the file says: degraded
    assert status == 503 and body["checks"]["model"]["refused"]["alias"] is None
    _no_paths(body, store_copy)
    assert client.post("/api/v1/predict", json=BODY).status_code == 200

    runner = CliRunner()
    listing = runner.invoke(deploy_command, ["--list", "--models-dir", str(store_copy)])
    assert listing.exit_code == 0 and "aliases.json is not valid JSON" in listing.stderr
    repaired = runner.invoke(deploy_command, ["--version", quick_bundle.production, "--alias", "production",
                                              "--models-dir", str(store_copy)])
    assert repaired.exit_code == 0, repaired.output
    assert "found: alias file aliases.json is not valid JSON" in repaired.stderr
    assert json.loads((store_copy / "aliases.json").read_text()) == {
        "production": quick_bundle.production, "challenger": quick_bundle.challenger}
    status, body = _health(client)
    assert status == 200 and body["checks"]["model"]["refused"] is None
