"""Real PostgreSQL and Redis servers for integration tests, started on 127.0.0.1 by the test run.

The Debian packages' own services are never used: each test session runs its own throwaway
instances in a temporary directory, on free ports, and stops them at the end. PostgreSQL
refuses to run as root, so as root its programs run as the ``postgres`` user (``runuser``)
in a directory that user owns.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SETUP_HINT = "install postgresql and redis-server (README Set up)"
READY_SECONDS = 30


class ServerUnavailable(RuntimeError):
    """The server programs are not installed here."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: PG_BIN, then PATH, then Debian's layout (newest)."""
    candidates = [os.environ.get("PG_BIN", "")]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for folder in filter(None, candidates):
        if all((Path(folder) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_bytes()[-n:].decode(errors="replace") if path.exists() else "(no log)"


class PostgresServer:
    """One PostgreSQL cluster in a temp directory; ``create_database`` hands out fresh databases."""

    def __init__(self):
        self.bin = postgres_bin_dir()
        if self.bin is None:
            raise ServerUnavailable("PostgreSQL server programs (initdb, pg_ctl, postgres) not found")
        self.port = None
        self.root = None
        self._running = False

    def _as_owner(self) -> list[str]:
        # PostgreSQL will not start as root; drop to the postgres user the package created.
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run(self._as_owner() + list(args), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                               f"\n{_tail(self.root / 'server.log')}")

    def start(self) -> "PostgresServer":
        # Not under pytest's tmp dirs: those are private to root and the postgres user must own this one.
        self.root = Path(tempfile.mkdtemp(prefix="cp-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync", "--no-instructions")
        self.port = free_port()
        # Durability is worth nothing in a throwaway test cluster; speed is. The server's time zone
        # is deliberately not UTC (and not whole hours off it): nothing may depend on the session zone.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c timezone=Asia/Kolkata")
        self._running = True
        atexit.register(self.stop)  # if the session dies before its fixture teardown
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-w",
                  "-t", str(READY_SECONDS), "-o", options, "start")
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL never accepted connections:\n{_tail(self.root / 'server.log')}")
                time.sleep(0.1)

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its SQLAlchemy URL (psycopg 3 driver)."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``create_database``, closing any connection a test left open."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._running:
            self._running = False
            subprocess.run(self._as_owner() + [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                                                "fast", "-w", "stop"], capture_output=True, timeout=60)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class RedisServer:
    """One redis-server subprocess on 127.0.0.1 with persistence off."""

    def __init__(self):
        self.exe = shutil.which("redis-server") or next(
            (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).is_file()), None)
        if self.exe is None:
            raise ServerUnavailable("redis-server not found")
        self.port = None
        self.proc = None
        self.root = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        import redis

        self.root = Path(tempfile.mkdtemp(prefix="cp-redis-"))
        self.port = free_port()
        log = open(self.root / "server.log", "wb")
        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.root)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        atexit.register(self.stop)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n{_tail(self.root / 'server.log')}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server never answered PING:\n{_tail(self.root / 'server.log')}")
            time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def start_or_explain(server_class):
    """(started server, None), or (None, what is missing) when its programs are not installed here."""
    try:
        return server_class().start(), None
    except ServerUnavailable as exc:
        return None, str(exc)
