"""Helpers for tests that need real processes: a database of their own, a migrated schema,
a uvicorn server in a subprocess on a free port."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psycopg2
import pytest
from sqlalchemy.engine import URL, make_url

from tests.conftest import ROOT, TEST_SECRET_KEY

SERVER_START_TIMEOUT_SECONDS = 30.0
SERVER_STOP_TIMEOUT_SECONDS = 10.0


def postgres_test_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", "")


requires_postgres = pytest.mark.skipif(
    not postgres_test_url(), reason="needs PostgreSQL (TEST_DATABASE_URL)"
)


def _libpq_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """A database of the test's own: a new one on the PostgreSQL server under test, dropped
    afterwards, or a new SQLite file."""
    if not postgres_test_url():
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the PostgreSQL server under test, dropped afterwards."""
    base_url = make_url(postgres_test_url())
    name = f"{base_url.database}_h_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(_libpq_dsn(base_url))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield base_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def server_env(database_url: str, **overrides: str) -> dict[str, str]:
    """Settings for a subprocess: explicit, so a developer's `.env` cannot change the test."""
    env = dict(os.environ)
    env.update(
        ENVIRONMENT="test",
        SECRET_KEY=TEST_SECRET_KEY,
        DATABASE_URL=database_url,
        DATABASE_READ_URL="",
        REDIS_URL="",
        BCRYPT_ROUNDS="4",
        LOGIN_RATE_LIMIT="100000/minute",
        REGISTER_RATE_LIMIT="",
        FIRST_SUPERUSER_EMAIL="",
        FIRST_SUPERUSER_PASSWORD="",
        LOG_LEVEL="WARNING",
    )
    env.update(overrides)
    return env


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=ROOT,
        env=server_env(database_url),
        check=True,
        capture_output=True,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@contextmanager
def run_server(database_url: str, log_dir: Path, **overrides: str) -> Iterator[LiveServer]:
    """One uvicorn worker serving main:app, stopped (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    log_path = log_dir / f"uvicorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=server_env(database_url, **overrides),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_until_healthy(server.base_url, process, server.log)
        yield server
    finally:
        _stop(process)


def wait_until_healthy(
    base_url: str,
    process: subprocess.Popen[bytes],
    read_log: Callable[[], str] = lambda: "",
    path: str = "/health",
    timeout: float = SERVER_START_TIMEOUT_SECONDS,
) -> None:
    """Poll `path` until it answers 200; fail with the server's log if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{read_log()}")
        try:
            if httpx2.get(f"{base_url}{path}", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{base_url}{path} did not answer 200 in {timeout} s:\n{read_log()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
