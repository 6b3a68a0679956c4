"""In-process mode (SQLite, `make dev`): jobs run in the app's process after their commit,
retried on failure, never when their transaction rolls back. It is SQLite's mode, so it is
tested on SQLite; on PostgreSQL the queue runs jobs (tests/jobs/test_queue.py and
test_worker.py), and only the tests that build their own apps or processes run here."""

import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlmodel import Session
from starlette.testclient import TestClient

from core import jobs
from core.data.db import Database
from main import create_app
from tests.conftest import ROOT, make_settings
from tests.jobs.sample_jobs import send_note
from tests.smtp import Inbox
from tests.support import postgres_test_url, server_env

RECIPIENT = "someone@example.com"

sqlite_mode = pytest.mark.skipif(
    bool(postgres_test_url()),
    reason="in-process jobs are SQLite's mode: on PostgreSQL the suite runs the queue",
)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    inbox = Inbox()
    inbox.start()
    yield inbox
    inbox.stop()


@pytest.fixture
def extra_settings() -> dict[str, object]:
    return {}


@pytest.fixture
def settings_overrides(inbox: Inbox, extra_settings: dict[str, object]) -> dict[str, object]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": inbox.port,
        "SMTP_STARTTLS": False,
        **extra_settings,
    }


def runner(app: FastAPI) -> jobs.InProcessJobs:
    assert isinstance(app.state.jobs, jobs.InProcessJobs)
    return app.state.jobs


def run_service(client: TestClient, work: Callable[[Session], None]) -> None:
    """Run `work(session)` the way a route does: `await db.run(work)` on the app's loop."""
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(database.run, work)


def enqueue_and_commit(marker: str) -> Callable[[Session], None]:
    def work(session: Session) -> None:
        jobs.enqueue(session, send_note, recipient=RECIPIENT, marker=marker)
        session.commit()

    return work


@sqlite_mode
def test_a_job_runs_once_its_transaction_commits(
    app: FastAPI, client: TestClient, inbox: Inbox
) -> None:
    run_service(client, enqueue_and_commit("after the commit"))
    assert runner(app).wait_idle(timeout=10)
    (message,) = inbox.wait_for(1, timeout=5)
    assert message["Subject"] == "after the commit"
    assert "attempt=1 job=None" in str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]


@sqlite_mode
def test_a_rolled_back_or_abandoned_transaction_runs_nothing(
    app: FastAPI, client: TestClient, inbox: Inbox
) -> None:
    def rolled_back(session: Session) -> None:
        jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="rolled back")
        session.rollback()

    def abandoned(session: Session) -> None:
        jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="never committed")

    run_service(client, rolled_back)
    run_service(client, abandoned)
    run_service(client, enqueue_and_commit("sentinel"))
    assert runner(app).wait_idle(timeout=10)
    inbox.wait_for(1, timeout=5)
    time.sleep(0.2)
    assert inbox.subjects() == ["sentinel"]


@sqlite_mode
def test_only_the_jobs_of_a_rolled_back_savepoint_are_dropped(
    app: FastAPI, client: TestClient, inbox: Inbox
) -> None:
    def work(session: Session) -> None:
        jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="before the savepoint")
        savepoint = session.begin_nested()
        jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="inside the savepoint")
        savepoint.rollback()
        jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="after the savepoint")
        session.commit()

    run_service(client, work)
    assert runner(app).wait_idle(timeout=10)
    inbox.wait_for(2, timeout=5)
    time.sleep(0.2)
    assert sorted(inbox.subjects()) == ["after the savepoint", "before the savepoint"]


@sqlite_mode
def test_a_released_savepoint_waits_for_the_outer_commit(
    app: FastAPI, client: TestClient, inbox: Inbox
) -> None:
    def released_then_rolled_back(session: Session) -> None:
        with session.begin_nested():
            jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="outer rolled back")
        assert runner(app).wait_idle(timeout=5)
        assert inbox.subjects() == []  # released, but the outer transaction is still open
        session.rollback()

    def released_then_committed(session: Session) -> None:
        with session.begin_nested():
            jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="outer committed")
        session.commit()

    run_service(client, released_then_rolled_back)
    run_service(client, released_then_committed)
    assert runner(app).wait_idle(timeout=10)
    inbox.wait_for(1, timeout=5)
    time.sleep(0.2)
    assert inbox.subjects() == ["outer committed"]


@sqlite_mode
def test_a_failing_job_is_retried_until_the_mail_server_is_back(
    app: FastAPI, client: TestClient, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.jobs")
    inbox.stop()
    run_service(client, enqueue_and_commit("after the outage"))
    deadline = time.monotonic() + 10
    while "failed (attempt 2 of 10)" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    inbox.start()
    assert runner(app).wait_idle(timeout=10)
    (message,) = inbox.wait_for(1, timeout=5)
    attempt = re.search(r"attempt=(\d+)", str(message.get_body(("plain",)).get_content()))  # type: ignore[union-attr]
    assert attempt is not None
    assert int(attempt.group(1)) >= 3
    assert RECIPIENT not in caplog.text


@sqlite_mode
@pytest.mark.parametrize("extra_settings", [{"JOBS_MAX_ATTEMPTS": 2}])
def test_a_job_that_keeps_failing_is_logged_then_dropped(
    app: FastAPI, client: TestClient, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.jobs")
    inbox.stop()
    run_service(client, enqueue_and_commit("never delivered"))
    assert runner(app).wait_idle(timeout=10)
    gave_up = [r for r in caplog.records if getattr(r, "outcome", None) == "failed"]
    assert len(gave_up) == 1
    assert "failed for good after 2 attempts, lost (in-process jobs are not kept)" in (
        gave_up[0].getMessage()
    )
    assert "ConnectionRefusedError" in gave_up[0].getMessage()
    assert RECIPIENT not in caplog.text


def test_the_app_runs_jobs_in_process_on_sqlite_and_queues_them_on_postgresql(
    tmp_path: Path,
) -> None:
    sqlite_app = create_app(make_settings(f"sqlite:///{tmp_path / 'auto.db'}", JOBS_MODE="auto"))
    postgres_app = create_app(
        make_settings("postgresql+psycopg2://nobody@127.0.0.1:1/none", JOBS_MODE="auto")
    )
    try:
        assert isinstance(sqlite_app.state.jobs, jobs.InProcessJobs)
        assert postgres_app.state.jobs is None
    finally:
        sqlite_app.state.database.dispose()
        postgres_app.state.database.dispose()
        jobs.use_in_process_runner(None)


def test_the_worker_idles_in_in_process_mode_and_stops_on_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env=server_env(f"sqlite:///{tmp_path / 'idle.db'}", LOG_LEVEL="INFO"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "job worker idle" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.05)
        assert "JOBS_MODE is in-process" in log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_jobs_command_says_there_is_no_queue_in_in_process_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "jobs", "list"],
        cwd=ROOT,
        env=server_env(f"sqlite:///{tmp_path / 'none.db'}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no job queue: JOBS_MODE is in-process" in result.stderr
