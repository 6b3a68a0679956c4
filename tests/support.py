"""Helpers for tests that need real processes: a database of their own, a migrated schema,
a uvicorn server in a subprocess on a free port."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
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
    # A server started outside gunicorn keeps its metrics in memory unless a test says not.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
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
        stop_process_group(process)


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


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process and its children (started with start_new_session), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- servers a test owns: a TCP proxy in front of one, a Redis of its own ----------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server (PostgreSQL, Redis), one pair of threads per
    connection, so a test can make the server vanish or hang without touching it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.frozen = threading.Event()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, as a crashed server would."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            _shutdown(listener)
            listener.close()
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            _shutdown(sock)
            sock.close()

    def freeze(self) -> None:
        """Stop passing bytes but keep every socket open: a network partition, or a server
        that hangs, rather than one that refuses."""
        self.frozen.set()

    def thaw(self) -> None:
        """Pass bytes again. Connections that lost bytes meanwhile stay broken; new ones work."""
        self.frozen.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            if self.frozen.is_set():
                with self._lock:
                    self._open.add(downstream)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((downstream, upstream))
            for source, target in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.frozen.is_set():
                    continue  # the bytes go nowhere
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                _shutdown(sock)
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


requires_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (apt-get install redis-server)"
)


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a free port: it can be stopped, started again on
    the same port and flushed without touching anyone else's Redis."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.command("PING") == "+PONG":
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
        self.process = None

    def command(self, *words: str) -> str:
        """One command in Redis's inline protocol; its first reply line, "" when unreachable."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(" ".join(words).encode() + b"\r\n")
                return sock.recv(65536).split(b"\r\n", 1)[0].decode()
        except OSError:
            return ""


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
