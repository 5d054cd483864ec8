"""docker-compose.yml names only things that exist (no Docker engine runs here): its commands are
real subcommands and scripts, its variables are ones the project reads, its references resolve, and
the balancer's command turns deploy/balancer.conf into a configuration Debian's nginx accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
import yaml

from tests.integration.test_render_yaml import ROOT, PLATFORM_VARS, check_command, variables_the_project_reads
from tests.support.nginx import nginx_binary

APP_SERVICES = ("bootstrap", "api1", "api2", "jobs")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_topology(compose):
    services = compose["services"]
    assert {"postgres", "redis", "balancer", *APP_SERVICES} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    for api in ("api1", "api2"):  # the API waits for bootstrap to have made the store ready
        assert services[api]["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
        assert "command" not in services[api]  # the image's deploy/start.sh
    assert not any("improved_models" in str(v) for s in services.values() for v in s.get("volumes", []))


def test_app_commands_exist(compose, tmp_path):
    services = compose["services"]
    check_command(services["bootstrap"]["command"], tmp_path)
    loop = services["jobs"]["command"][2]
    commands = [shlex.split(m) for m in re.findall(r"python -m crypto_predictor \w+", loop)]
    assert [c[3] for c in commands] == ["refresh", "verify", "retrain"]
    for argv in commands:
        check_command(argv, tmp_path)


def test_every_variable_is_read_by_the_project(compose):
    read = variables_the_project_reads() | PLATFORM_VARS
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert set(env) <= read, set(env) - read
        assert env["MODEL_STORE_URL"] == env["DATABASE_URL"]  # one PostgreSQL holds the model store


def test_the_balancer_command_renders_a_valid_nginx_config(compose, tmp_path):
    binary = nginx_binary()
    if binary is None:
        pytest.skip("install nginx (README Set up)")
    script = compose["services"]["balancer"]["command"][2]
    render = script.split("&& exec")[0].replace("/etc/nginx/balancer.conf", str(ROOT / "deploy" / "balancer.conf"))
    render = render.replace("/tmp/lb", str(tmp_path))
    subprocess.run(["sh", "-c", render], check=True, timeout=30)
    conf = tmp_path / "nginx.conf"
    text = conf.read_text()
    assert "__" not in text and text.count("server api") == 2
    conf.write_text(text.replace("api1:8000", "127.0.0.1:18001").replace("api2:8000", "127.0.0.1:18002"))
    user = " user root;" if os.geteuid() == 0 else ""
    checked = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;" + user],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
