"""Recovery and verification mails through the durable queue, end to end: a real server, a
real `manage.py worker`, a real SMTP server that is down at first, PostgreSQL.

A mail the app promised (a 202, a 201) is a mail that arrives, even when the mail server was
down when it was asked for, and even when the web process dies right after answering.
"""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx2
import pytest

from tests.conftest import ROOT
from tests.smtp import Inbox
from tests.support import (
    fresh_postgres_database,
    migrate,
    requires_postgres,
    run_server,
    server_env,
)

pytestmark = requires_postgres

FRONTEND = "https://app.example.com"
PASSWORD = "first-password"
WORKER_SETTINGS = {
    "JOBS_RETRY_BASE_SECONDS": "0.2",
    "JOBS_RETRY_MAX_SECONDS": "0.5",
    "JOBS_HEARTBEAT_SECONDS": "0.3",
    "JOBS_STALLED_AFTER_SECONDS": "1.5",
    "JOBS_POLL_SECONDS": "0.2",
    "JOBS_SHUTDOWN_TIMEOUT": "5",
    "JOBS_METRICS_PORT": "0",
    "FRONTEND_URL": FRONTEND,
    "SMTP_HOST": "127.0.0.1",
    "SMTP_STARTTLS": "false",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        migrate(url)
        yield url


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    inbox = Inbox()  # not listening yet: the mail server is down
    yield inbox
    inbox.stop()


@pytest.fixture
def worker(database_url: str, inbox: Inbox, tmp_path: Path) -> Iterator[Path]:
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env=server_env(database_url, SMTP_PORT=str(inbox.port), **WORKER_SETTINGS),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield log_path
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def link(message: EmailMessage, page: str) -> str:
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    text = str(body.get_content())
    found = re.findall(re.escape(f"{FRONTEND}/{page}?token=") + r"([A-Za-z0-9_\-]+)", text)
    assert found, text
    token: str = found[0]
    return token


def test_mails_promised_while_the_mail_server_was_down_arrive_once_it_is_back(
    database_url: str, inbox: Inbox, worker: Path, tmp_path: Path
) -> None:
    email = f"queued-{uuid.uuid4().hex[:8]}@example.com"
    settings = {**WORKER_SETTINGS, "SMTP_PORT": str(inbox.port)}
    with (
        run_server(database_url, tmp_path, **settings) as server,
        httpx2.Client(base_url=server.base_url, timeout=15) as client,
    ):
        registered = client.post(
            "/api/v1/auth/register", json={"name": "Queued", "email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201
        # The same address again: a rolled-back registration mails nothing.
        assert (
            client.post(
                "/api/v1/auth/register",
                json={"name": "Again", "email": email, "password": PASSWORD},
            ).status_code
            == 409
        )
        assert (
            client.post("/api/v1/auth/password-recovery", json={"email": email}).status_code == 202
        )
        deadline = time.monotonic() + 30  # the worker tries, and fails, soon
        while "retrying" not in worker.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "retrying" in worker.read_text()
        inbox.start()  # the mail server comes back
        messages = inbox.wait_for(2, timeout=30)
        time.sleep(1.0)  # a third mail (the rolled-back sign-up) would have arrived by now
        assert sorted(str(message["Subject"]).split(": ")[1] for message in inbox.messages) == [
            "confirm your email address",
            "reset your password",
        ]
        by_subject = {str(message["Subject"]).split(": ")[1]: message for message in messages}
        verified = client.post(
            "/api/v1/auth/verify-email",
            json={"token": link(by_subject["confirm your email address"], "verify-email")},
        )
        assert verified.status_code == 204
        reset = client.post(
            "/api/v1/auth/reset-password",
            json={
                "token": link(by_subject["reset your password"], "reset-password"),
                "new_password": "second-password",
            },
        )
        assert reset.status_code == 204


def test_a_web_process_killed_right_after_answering_still_gets_its_mail_sent(
    database_url: str, inbox: Inbox, worker: Path, tmp_path: Path
) -> None:
    inbox.start()
    settings = {**WORKER_SETTINGS, "SMTP_PORT": str(inbox.port)}
    email = f"killed-{uuid.uuid4().hex[:8]}@example.com"
    with run_server(database_url, tmp_path, **settings) as server:
        with httpx2.Client(base_url=server.base_url, timeout=15) as client:
            client.post(
                "/api/v1/auth/register",
                json={"name": "Killed", "email": email, "password": PASSWORD},
            )
            inbox.wait_for(1, timeout=30)  # the sign-up's own verification mail
            answered = client.post("/api/v1/auth/password-recovery", json={"email": email})
        os.killpg(server.process.pid, signal.SIGKILL)  # right after the 202, before anything
        assert answered.status_code == 202
    messages = inbox.wait_for(2, timeout=30)
    assert str(messages[-1]["Subject"]).endswith("reset your password")
    assert messages[-1]["To"] == email
