import json
import logging
import shlex
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
import yaml
from starlette.testclient import TestClient

from core.observability.logging import JsonFormatter, log_formatter
from tests.conftest import ROOT
from tests.support import free_port, server_env, stop_process_group, wait_until_healthy


class TestRequestId:
    def test_a_sane_incoming_id_is_echoed(self, client: TestClient) -> None:
        response = client.get("/api/v1/users/me", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    def test_a_missing_id_is_generated(self, client: TestClient) -> None:
        first = client.get("/api/v1/users/me").headers["x-request-id"]
        second = client.get("/api/v1/users/me").headers["x-request-id"]
        assert len(first) == 32
        assert first != second

    def test_a_probe_without_an_id_gets_none_and_one_with_an_id_gets_it_back(
        self, client: TestClient
    ) -> None:
        assert "x-request-id" not in client.get("/health").headers
        assert client.get("/health", headers={"X-Request-ID": "lb-1"}).headers["x-request-id"] == (
            "lb-1"
        )

    def test_an_unsafe_id_is_replaced(self, client: TestClient) -> None:
        response = client.get("/api/v1/users/me", headers={"X-Request-ID": "evil\tid" + "x" * 200})
        assert response.headers["x-request-id"] != "evil\tid" + "x" * 200
        assert len(response.headers["x-request-id"]) == 32


class TestRequestLog:
    def test_one_line_per_request_with_its_id(
        self, client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="app.request")
        client.get("/api/v1/users/me", headers={"X-Request-ID": "trace-me"})
        lines = [r for r in caplog.records if r.name == "app.request"]
        assert len(lines) == 1
        record = lines[0]
        assert record.__dict__["request_id"] == "trace-me"
        assert record.__dict__["status"] == 401
        assert record.__dict__["path"] == "/api/v1/users/me"

    def test_the_readable_line_carries_the_request_id_status_and_duration(
        self, client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Development's format shows only the message: the id must be in it."""
        caplog.set_level(logging.INFO, logger="app.request")
        client.get("/api/v1/users/me", headers={"X-Request-ID": "find-me-1"})
        (record,) = [r for r in caplog.records if r.name == "app.request"]
        line = log_formatter(json_lines=False).format(record)
        assert " app.request GET /api/v1/users/me 401 " in line
        assert line.endswith(" ms request_id=find-me-1")

    def test_json_lines_carry_the_request_fields(self) -> None:
        record = logging.makeLogRecord(
            {"name": "app.request", "msg": "GET / 200", "request_id": "r1", "status": 200}
        )
        entry = json.loads(JsonFormatter().format(record))
        assert entry["message"] == "GET / 200"
        assert (entry["request_id"], entry["status"]) == ("r1", 200)


# --- the development servers: one line per request ------------------------------------------


def make_dev_server_command() -> list[str]:
    """The uvicorn command `make dev` runs, as make prints it (`-n`: nothing is executed)."""
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", "dev"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    (line,) = [line for line in printed.splitlines() if "uvicorn main:app" in line]
    words = shlex.split(line)
    start = next(index for index, word in enumerate(words) if word.endswith("/uvicorn"))
    return [str(ROOT / words[start]), *words[start + 1 :]]


def compose_dev_server_command() -> list[str]:
    """The web command of `docker compose up` (compose.override.yml), run from the venv."""
    override = yaml.safe_load((ROOT / "compose.override.yml").read_text())
    command: list[str] = override["services"]["web"]["command"]
    assert command[0] == "uvicorn", command
    return [str(ROOT / ".venv" / "bin" / "uvicorn"), *command[1:]]


def on_port(command: list[str], port: int) -> list[str]:
    """The same command on 127.0.0.1:<port>, so the test never takes a port in use."""
    command = list(command)
    for option, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        command[command.index(option) + 1] = value
    return command


@contextmanager
def serving(command: list[str], log_path: Path, database_url: str) -> Iterator[str]:
    port = free_port()
    env = server_env(database_url, ENVIRONMENT="local", LOG_LEVEL="INFO")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            on_port(command, port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process, lambda: log_path.read_text(errors="replace"))
        yield base_url
    finally:
        stop_process_group(process)


@pytest.mark.parametrize(
    "server_command",
    [make_dev_server_command, compose_dev_server_command],
    ids=["make dev", "docker compose up"],
)
def test_the_development_server_logs_each_request_once_with_its_id(
    server_command: Callable[[], list[str]], tmp_path: Path
) -> None:
    log_path = tmp_path / "server.log"
    with serving(server_command(), log_path, f"sqlite:///{tmp_path / 'app.db'}") as base_url:
        httpx2.get(f"{base_url}/api/v1/users/me", headers={"X-Request-ID": "dev-line-1"})
        generated = httpx2.get(f"{base_url}/api/v1/users/me").headers["x-request-id"]
    lines = [line for line in log_path.read_text().splitlines() if "/api/v1/users/me" in line]
    assert len(lines) == 2, "\n".join(lines)
    assert lines[0].endswith(" request_id=dev-line-1"), lines
    assert lines[1].endswith(f" request_id={generated}"), lines
