"""The production server command (gunicorn -c gunicorn.conf.py main:app), run for real.

Starts gunicorn with two uvicorn workers on a migrated SQLite file, then stops it with SIGTERM
while registrations are being hashed, as an orchestrator does on every deploy.
"""

import gc
import os
import runpy
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.support import free_port, wait_until_healthy

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn_worker")

ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_SECONDS = 30.0
SHUTDOWN_DEADLINE_SECONDS = 45.0  # above graceful_timeout, so a hung worker shows as a failure
IN_FLIGHT_REQUESTS = 6


@dataclass
class Server:
    process: "subprocess.Popen[bytes]"
    base_url: str
    home: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "XDG_RUNTIME_DIR"}
    env.update(
        {
            "HOME": str(home),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
            "ENVIRONMENT": "test",
            "SECRET_KEY": "gunicorn-test-secret-key-0123456789-abcdef",
            "REDIS_URL": "",
            "REGISTER_RATE_LIMIT": "",
            # Each registration hashes for a noticeable moment, so several are still running
            # when the signal arrives.
            "BCRYPT_ROUNDS": "12",
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "main:app"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Server(process, f"http://127.0.0.1:{port}", home, log)
    try:
        wait_until_healthy(
            running.base_url, running.process, running.output, timeout=STARTUP_DEADLINE_SECONDS
        )
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_sigterm_lets_in_flight_requests_finish_and_master_exits_cleanly(server: Server) -> None:
    all_connected = threading.Barrier(IN_FLIGHT_REQUESTS)
    first_response = threading.Event()

    def register(index: int) -> int:
        with httpx2.Client(base_url=server.base_url, timeout=SHUTDOWN_DEADLINE_SECONDS) as client:
            # A request on the same keep-alive connection first: once it is answered, a worker
            # has accepted the connection, so the registration below reaches the app even
            # though the listening socket closes on SIGTERM.
            client.get("/health").raise_for_status()
            all_connected.wait(timeout=STARTUP_DEADLINE_SECONDS)
            response = client.post(
                "/api/v1/auth/register",
                json={
                    "name": f"In flight {index}",
                    "email": f"in-flight-{index}-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "correct-horse-battery",
                },
            )
            first_response.set()
            return response.status_code

    with ThreadPoolExecutor(max_workers=IN_FLIGHT_REQUESTS) as pool:
        futures = [pool.submit(register, index) for index in range(IN_FLIGHT_REQUESTS)]
        # The first answer means every request was sent a hash-time ago; the others are still
        # queued for or inside bcrypt in the workers.
        assert first_response.wait(timeout=SHUTDOWN_DEADLINE_SECONDS), server.output()
        answered_before_signal = sum(future.done() for future in futures)
        server.process.send_signal(signal.SIGTERM)
        statuses = [future.result(timeout=SHUTDOWN_DEADLINE_SECONDS) for future in futures]

    exit_code = server.process.wait(timeout=SHUTDOWN_DEADLINE_SECONDS)
    output = server.output()
    assert answered_before_signal < IN_FLIGHT_REQUESTS, "no request was in flight at SIGTERM"
    assert statuses == [201] * IN_FLIGHT_REQUESTS, output
    assert exit_code == 0, output
    assert "Shutting down: Master" in output
    # control_socket_disable: gunicorn leaves the home directory alone.
    assert list(server.home.iterdir()) == []


def test_workers_build_the_app_with_the_collector_off_then_freeze_it() -> None:
    """gunicorn.conf.py's worker hooks, in the order gunicorn calls them around the import."""
    environment = dict(os.environ)
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert dict(os.environ) == environment  # reading the configuration changes nothing
    was_enabled, frozen_before = gc.isenabled(), gc.get_freeze_count()
    try:
        hooks["post_fork"](None, None)
        assert not gc.isenabled()
        hooks["post_worker_init"](None)
        # The collector is back for whatever the worker allocates while serving.
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()
        if not was_enabled:
            gc.disable()
