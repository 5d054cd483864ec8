"""The Dockerfile's invariants, checked without a Docker engine (none runs here).

Non-root user before the start command, Gunicorn started from gunicorn.conf.py, a health
check on /api/health/live that really fails on a 503, only code copied into the image (bundles
only when INCLUDE_MODELS=1), and every requirement pinned.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START = ["deploy/start.sh"]


def instructions(path=ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def _options(args: str) -> tuple[dict, list[str]]:
    options, words = {}, args.split()
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        options[key] = value
    return options, words


def test_final_image_is_python_311_slim():
    assert final_stage()[0] == ("FROM", "python:3.11-slim")


def test_runs_as_a_numeric_non_root_user_before_the_start_command():
    stage = final_stage()
    keywords = [k for k, _ in stage]
    assert keywords.count("USER") == 1 and keywords[-1] == "CMD"
    user_at = keywords.index("USER")
    assert user_at < keywords.index("CMD") and "RUN" not in keywords[user_at:]  # nothing runs as root after
    user = stage[user_at][1].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so runAsNonRoot-style checks can verify it
    assert any(k == "RUN" and f"--uid {user}" in a for k, a in stage)


def test_starts_nginx_in_front_of_gunicorn_with_its_config_file():
    cmd = json.loads(dict(final_stage())["CMD"])
    assert cmd == START
    script = (ROOT / "deploy" / "start.sh").read_text()
    assert "gunicorn --config gunicorn.conf.py --bind \"unix:$socket\" flask_api:app" in script
    assert 'nginx -e stderr -p "$run_dir" -c "$run_dir/nginx.conf"' in script
    assert (ROOT / "deploy" / "start.sh").stat().st_mode & 0o111  # executable in the image too
    assert any(k == "RUN" and "apt-get install" in a and " nginx" in a for k, a in final_stage())
    assert (ROOT / "gunicorn.conf.py").is_file() and (ROOT / "flask_api.py").is_file()


def test_only_code_is_copied_and_bundles_only_on_request():
    steps = instructions()
    assert ("ARG", "INCLUDE_MODELS=0") in steps  # off unless the build asks
    models_run = next(a for k, a in steps if k == "RUN" and "/bundles" in a)
    assert '"$INCLUDE_MODELS" = "1"' in models_run
    for keyword, args in final_stage():
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY"
        options, words = _options(args)
        sources, dest = words[:-1], words[-1]
        if options.get("from") == "models":
            assert dest.rstrip("/") == "/app/improved_models"
            continue
        for source in sources:
            assert source not in (".", "./") and not source.startswith(("improved_models", "instance", "tests"))
            assert (ROOT / source).exists(), source


def test_dockerignore_keeps_local_state_out_of_the_context():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "instance", "tests"} <= ignored


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-r "):
                continue
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.]*", line), f"{name}: {line!r} is not pinned"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(self.status if self.path == "/api/health/live" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status,healthy", [(200, True), (503, False)])
def test_healthcheck_command_follows_liveness(status, healthy):
    args = dict(final_stage())["HEALTHCHECK"]
    assert "/api/health/live" in args
    command = json.loads(args[args.index("CMD ") + 4:])
    assert command[:2] == ["python", "-c"]
    handler = type("Handler", (_Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"PORT": str(server.server_address[1])}
        result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr.decode()[-500:]
