"""deploy_model.py through click's test runner (and once as a real process)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crypto_predictor.registry.aliases import alias_history, get_aliases
from crypto_predictor.registry.bundle import BundleWriter
from crypto_predictor.cli.deploy import headline_metrics
from tests.support.cli import assert_one_line_error

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("deploy_model", REPO / "deploy_model.py")
deploy_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_model)

OVERALL = {"bitcoin": {"24h": {"xgboost": {"mase": 0.9712, "directional_accuracy": 0.534},
                               "linear": {"mase": 0.99, "directional_accuracy": 0.51}},
                       "1h": {"ensemble": {"mase": 1.0041, "directional_accuracy": 0.499}}}}


def make_bundle(models_dir, overall=None) -> str:
    writer = BundleWriter(models_dir)
    writer.write_bytes("bitcoin/24h/xgboost/model.json", b'{"trees": []}')
    writer.write_bytes("features.json", b'["rsi_14"]')
    writer.finalize(assets=["bitcoin"], timeframes=["1h", "24h"], kinds=["xgboost"],
                    metrics={"overall": overall} if overall is not None else {})
    return writer.version


@pytest.fixture()
def store(tmp_path) -> Path:
    root = tmp_path / "models"
    make_bundle(root)
    make_bundle(root, OVERALL)
    return root


def cli(*args):
    result = CliRunner().invoke(deploy_model.main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_deploy_rollback_and_list(store):
    result = cli("--version", "v1", "--models-dir", store)
    assert result.exit_code == 0 and result.output.strip() == "production: (unset) -> v1"
    result = cli("--version", "v2", "--models-dir", store)
    assert result.exit_code == 0 and result.output.strip() == "production: v1 -> v2"
    assert cli("--version", "v1", "--alias", "challenger", "--models-dir", store).exit_code == 0
    assert get_aliases(store) == {"production": "v2", "challenger": "v1"}

    listing = cli("--list", "--models-dir", store)
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[0].split()[:2] == ["VERSION", "CREATED"]
    v1 = next(line for line in lines if line.startswith("v1 "))
    assert "challenger" in v1 and "production" not in v1
    v2 = next(line for line in lines if line.startswith("v2 "))
    assert "production" in v2 and "bitcoin/1h" in v2 and "1.004" in v2 and "49.9%" in v2
    best = next(line for line in lines if "bitcoin/24h" in line)
    assert "xgboost" in best and "0.971" in best and "53.4%" in best  # best MASE, not linear's

    result = cli("--rollback", "--models-dir", store)
    assert result.exit_code == 0 and result.output.strip() == "production: v2 -> v1 (rolled back)"
    assert get_aliases(store)["production"] == "v1"
    actions = [h["action"] for h in alias_history(store, "production")]
    assert actions == ["set", "set", "rollback"]


def test_bad_version_is_one_readable_line(store):
    result = cli("--version", "v9", "--models-dir", store)
    assert_one_line_error(result, "v9", "available versions: v1, v2")
    assert not (store / "aliases.json").exists()


def test_tampered_version_is_refused(store):
    (store / "v2" / "features.json").write_bytes(b'["rsi_15"]')
    assert_one_line_error(cli("--version", "v2", "--models-dir", store), "features.json")
    assert "INVALID" in cli("--list", "--verify", "--models-dir", store).output


def test_usage_mistakes_are_one_line(store):
    assert_one_line_error(cli("--models-dir", store), "exactly one")
    assert_one_line_error(cli("--list", "--rollback", "--models-dir", store), "exactly one")
    assert_one_line_error(cli("--rollback", "--models-dir", store), "no previous version")
    assert cli("--version", "v1", "--alias", "staging", "--models-dir", store).exit_code == 2
    typo = store.parent / "modles"
    assert_one_line_error(cli("--version", "v1", "--models-dir", typo), "no model store")
    assert not typo.exists()


def test_models_dir_defaults_to_env(store, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(store))
    result = cli("--list")
    assert result.exit_code == 0 and "v2" in result.output
    monkeypatch.setenv("MODELS_DIR", str(store.parent / "empty"))
    assert "no finalized model versions" in cli("--list").output


@pytest.mark.parametrize("overall, expected", [
    ({}, []),
    ("garbage", []),
    (None, []),
    ({"mase": 0.9, "directional_accuracy": 0.55}, [("overall", "", 0.9, 0.55)]),
    ({"bitcoin/24h": {"mase": 0.8, "hit_rate": 0.6}}, [("bitcoin/24h", "", 0.8, 0.6)]),
    ([{"asset": "bitcoin", "timeframe": "1h", "kind": "lstm", "mase": 1.1, "mae": 3}],
     [("bitcoin/1h", "lstm", 1.1, None)]),
    ({"bitcoin": {"24h": {"rf": {"mase": None, "directional_accuracy": 0.52}, "lin": {"mase": 1.2}}}},
     [("bitcoin/24h", "lin", 1.2, None)]),
])
def test_headline_metrics_is_defensive_about_shape(overall, expected):
    got = [(m["pair"], m["kind"], m["mase"], m["directional_accuracy"])
           for m in headline_metrics(overall)]
    assert got == expected


def test_script_runs_as_a_process_and_fails_without_a_traceback(store):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    def run(*args):
        return subprocess.run([sys.executable, str(REPO / "deploy_model.py"), *args,
                               "--models-dir", str(store)],
                              capture_output=True, text=True, env=env, timeout=60)

    proc = run("--version", "v7")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "available versions: v1, v2" in proc.stderr
    assert run("--version", "v2").returncode == 0
    assert json.loads((store / "aliases.json").read_text()) == {"production": "v2"}


def test_push_then_deploy_through_a_shared_store(store, tmp_path):
    """Bundles trained locally are pushed, deployed from the shared store and seen from another host."""
    from crypto_predictor.registry.sql_store import SqlStore

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    refused = cli("--models-dir", store, "--push", "v1")
    assert refused.exit_code == 1 and "--push needs a shared store" in refused.output
    assert cli("--models-dir", store, "--store-url", url, "--push", "v1").output.startswith("pushed v1 to shared store")
    assert "v1 is already in shared store" in cli("--models-dir", store, "--store-url", url, "--push", "v1").output
    missing = cli("--models-dir", store, "--store-url", url, "--push", "v7")
    assert missing.exit_code == 1 and "no finished bundle 'v7'" in missing.output
    not_pushed = cli("--models-dir", tmp_path / "host2", "--store-url", url, "--version", "v2")
    assert not_pushed.exit_code == 1 and "available versions: v1" in not_pushed.output
    cli("--models-dir", store, "--store-url", url, "--push", "v2")
    other = tmp_path / "host2"  # another host: no bundles of its own, deploys from the shared store
    assert cli("--models-dir", other, "--store-url", url, "--version", "v2").output.strip() == "production: (unset) -> v2"
    assert (other / "v2" / "manifest.json").is_file()  # verified in a local copy before the switch
    listing = cli("--models-dir", other, "--store-url", url, "--list").output
    assert "v2" in listing and "production" in listing and "bitcoin/24h" in listing
    assert SqlStore(url, tmp_path / "host3").aliases() == {"production": "v2"}
    assert get_aliases(store) == {}  # the local directory's own alias file is not the shared store's
