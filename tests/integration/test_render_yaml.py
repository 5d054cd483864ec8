"""render.yaml names only things that exist: commands, files, routes, settings, references.

Render itself cannot run here, so this is what can be checked locally: every command the
Blueprint runs resolves to a file, a Click subcommand (with its options parsed by Click) or
a Gunicorn config and app that Gunicorn itself loads (``--check-config``); every variable is
one the project reads; the services reference each other by names that are defined.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crypto_predictor.cli.main import cli
from crypto_predictor.config import Config, TestConfig

ROOT = Path(__file__).resolve().parents[2]
# Variables that Render's Python runtime reads itself (documented by Render, not read by our code).
PLATFORM_VARS = {"PYTHON_VERSION"}
COMMAND_FIELDS = ("buildCommand", "preDeployCommand", "startCommand")
SECRET_HINT = re.compile(r"TOKEN|SECRET|PASSWORD|_KEY$")


@pytest.fixture(scope="module")
def blueprint() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def _services(blueprint, kind=None) -> list[dict]:
    return [s for s in blueprint["services"] if kind is None or s["type"] == kind]


def _env_entries(blueprint):
    """(owner name, entry) for every envVars entry of every service and group."""
    for owner in blueprint["services"] + blueprint.get("envVarGroups", []):
        for entry in owner.get("envVars", []):
            yield owner["name"], entry


def _env(service: dict, blueprint: dict) -> dict:
    """key -> entry as the service sees it, its groups' variables included."""
    groups = {g["name"]: g for g in blueprint.get("envVarGroups", [])}
    out = {}
    for entry in service.get("envVars", []):
        if "fromGroup" in entry:
            out.update({e["key"]: e for e in groups[entry["fromGroup"]]["envVars"]})
        else:
            out[entry["key"]] = entry
    return out


class _Recorder(dict):
    """An empty environment that remembers which names were asked for."""

    def __init__(self):
        super().__init__()
        self.asked = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default


def variables_the_project_reads() -> set[str]:
    recorder = _Recorder()
    Config(recorder)
    names = set(recorder.asked)
    pattern = re.compile(r"""(?:environ\.get|os\.getenv|environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
                         r"""|environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]""")
    for path in [ROOT / "gunicorn.conf.py", *sorted((ROOT / "crypto_predictor").rglob("*.py"))]:
        for match in pattern.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names


def simple_commands(line: str) -> list[list[str]]:
    """argv of each command in a shell list (;, &&, ||), without variable assignments and exit."""
    out = []
    for part in re.split(r"\s*(?:;|&&|\|\|)\s*", line.strip()):
        if not part or re.fullmatch(r"[A-Za-z_]\w*=\S*", part) or re.match(r"exit\b", part):
            continue
        out.append(shlex.split(part))
    return out


def check_command(argv: list[str], tmp_path) -> None:
    program, args = argv[0], argv[1:]
    if program == "pip":
        assert args[:2] == ["install", "-r"] and (ROOT / args[2]).is_file(), argv
    elif program == "python" and args[:2] == ["-m", "crypto_predictor"]:
        name, rest = args[2], args[3:]
        command = cli.commands.get(name)
        assert command is not None, f"`python -m crypto_predictor {name}`: no such subcommand"
        command.make_context(name, list(rest))  # raises on an unknown option or bad value
    elif program == "python" and args and args[0].endswith(".py"):
        assert (ROOT / args[0]).is_file(), argv
    elif program == "gunicorn":
        assert args[0] == "--config" and (ROOT / args[1]).is_file(), argv
        env = {**os.environ, "DATABASE_URL": "sqlite://", "MODELS_DIR": str(tmp_path)}
        result = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    else:
        pytest.fail(f"render.yaml runs {argv!r}, which this test does not know how to check")


def test_references_resolve(blueprint):
    names = [s["name"] for s in blueprint["services"]]
    assert len(names) == len(set(names))
    databases = {d["name"] for d in blueprint.get("databases", [])}
    services = {(s["type"], s["name"]) for s in blueprint["services"]}
    groups = {g["name"] for g in blueprint.get("envVarGroups", [])}
    for owner, entry in _env_entries(blueprint):
        if "fromDatabase" in entry:
            assert entry["fromDatabase"]["name"] in databases, (owner, entry)
        if "fromService" in entry:
            ref = entry["fromService"]
            assert (ref["type"], ref["name"]) in services, (owner, entry)
        if "fromGroup" in entry:
            assert entry["fromGroup"] in groups, (owner, entry)
        else:
            assert len({"value", "generateValue", "sync", "fromDatabase", "fromService"} & set(entry)) == 1, entry


def test_every_variable_is_read_by_the_project(blueprint):
    known = variables_the_project_reads() | PLATFORM_VARS
    assert {"DATABASE_URL", "ADMIN_TOKEN", "PORT", "PROMETHEUS_MULTIPROC_DIR"} <= known  # the scan itself works
    unknown = sorted({entry["key"] for _, entry in _env_entries(blueprint) if "key" in entry} - known)
    assert not unknown, f"render.yaml sets variables nothing reads: {unknown}"


def test_no_secret_is_written_in_the_file(blueprint):
    for owner, entry in _env_entries(blueprint):
        if SECRET_HINT.search(entry.get("key", "")) or entry.get("key", "").endswith("_URL"):
            assert "value" not in entry, f"{owner}: {entry['key']} must come from Render, not the file"
    web = _env(_services(blueprint, "web")[0], blueprint)
    assert web["ADMIN_TOKEN"].get("generateValue") is True


@pytest.mark.parametrize("field", COMMAND_FIELDS)
def test_every_command_exists(blueprint, field, tmp_path):
    lines = [s[field] for s in blueprint["services"] if field in s]
    assert lines or field == "preDeployCommand"
    for line in lines:
        commands = simple_commands(line)
        assert commands, line
        for argv in commands:
            check_command(argv, tmp_path)


def _cron_subcommands(cron) -> list[str]:
    return [argv[3] for argv in simple_commands(cron["startCommand"]) if argv[1:3] == ["-m", "crypto_predictor"]]


def test_jobs_run_refresh_and_verify_hourly_and_retrain_daily(blueprint):
    crons = {tuple(_cron_subcommands(c)): c for c in _services(blueprint, "cron")}
    assert set(crons) == {("refresh", "verify"), ("retrain",)}
    for cron in crons.values():
        fields = cron["schedule"].split()
        assert len(fields) == 5 and 0 <= int(fields[0]) <= 59
    assert crons[("refresh", "verify")]["schedule"].split()[1] == "*"  # every hour
    assert crons[("retrain",)]["schedule"].split()[1:3] != ["*", "*"]  # once a day


def test_a_first_deploy_bootstraps_itself(blueprint):
    (web,) = _services(blueprint, "web")
    assert simple_commands(web["preDeployCommand"]) == [["python", "-m", "crypto_predictor", "bootstrap"]]
    assert web["healthCheckPath"] == "/api/health"  # stays on: bootstrap makes the first deploy ready


def test_health_check_path_is_a_route(blueprint):
    from crypto_predictor.api import create_app

    (web,) = _services(blueprint, "web")
    app = create_app(TestConfig(MODELS_DIR=str(ROOT / "improved_models")))
    endpoint, _ = app.url_map.bind("localhost").match(web["healthCheckPath"], method="GET")
    assert endpoint == "health.health"


def test_state_lives_where_every_service_can_reach_it(blueprint):
    (web,) = _services(blueprint, "web")
    crons = _services(blueprint, "cron")
    web_env = _env(web, blueprint)
    # No disk anywhere: the model store is the database, so the web service can run several instances.
    assert all("disk" not in s for s in blueprint["services"])
    assert web.get("numInstances", 1) >= 2
    database = web_env["DATABASE_URL"]["fromDatabase"]
    assert web_env["MODEL_STORE_URL"]["fromDatabase"] == database
    for cron in crons:
        cron_env = _env(cron, blueprint)
        assert cron_env["DATABASE_URL"]["fromDatabase"] == database
        if "retrain" in _cron_subcommands(cron):  # it writes bundles: into the same shared store
            assert cron_env["MODEL_STORE_URL"]["fromDatabase"] == database
    # One Key Value for the cache and the rate limits.
    assert web_env["CACHE_REDIS_URL"]["fromService"] == web_env["RATELIMIT_STORAGE_URI"]["fromService"]
    assert web_env["CACHE_REDIS_URL"]["fromService"]["type"] == "keyvalue"
    assert int(web_env["PROXY_FIX_X_FOR"]["value"]) > 0  # behind Render's proxies


def test_render_database_urls_get_the_installed_driver():
    # Render's connectionString is postgresql://... with no driver named; SQLAlchemy must pick psycopg 3,
    # the only PostgreSQL driver in requirements.txt (creating the engine does not connect).
    from crypto_predictor.storage.engine import make_engine

    assert make_engine("postgresql://user:pw@dpg-example-a:5432/crypto_predictor").dialect.driver == "psycopg"
