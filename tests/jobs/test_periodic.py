"""Periodic jobs in-process (SQLite's mode): a timer in the app that runs them when due.
Worker processes on PostgreSQL run them in tests/jobs/test_worker.py."""

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session
from starlette.testclient import TestClient

from core import jobs
from core.data.audit import AuditEvent
from core.data.clock import utc_now
from core.data.db import Database
from main import create_app
from tests.conftest import make_settings
from tests.jobs import periodic_jobs  # noqa: F401 - declares the every-second purge
from tests.support import fresh_database, migrate, postgres_test_url


def test_a_bad_schedule_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="not a cron schedule"):
        jobs.periodic("every day at noon")


def test_the_runner_runs_a_periodic_job_when_due_and_stops_with_it() -> None:
    """The in-process runner alone: due times are whole seconds, one run each, none after
    stop."""
    runs: list[Any] = []

    @jobs.periodic("* * * * * *")
    def tick(context: jobs.JobContext) -> None:
        runs.append(context.scheduled_at)

    settings = make_settings("sqlite://")
    database = Database.from_settings(settings)
    runner = jobs.InProcessJobs(settings, lambda: (settings, database))
    try:
        runner.start_schedules([tick])
        wait_for(lambda: len(runs) >= 2, 10, "the job did not run twice")
    finally:
        runner.stop(timeout=5)
        database.dispose()
    stopped_with = len(runs)
    time.sleep(1.2)
    assert stopped_with >= 2
    assert len(runs) == stopped_with  # nothing after stop
    assert [moment.microsecond for moment in runs] == [0] * len(runs)
    assert runs[1] - runs[0] == timedelta(seconds=1)


@pytest.mark.skipif(bool(postgres_test_url()), reason="SQLite runs periodic jobs in-process")
def test_an_app_on_sqlite_runs_the_audit_purge_on_its_schedule(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        migrate(url)
        engine = create_engine(url)
        now = utc_now()
        with Session(engine) as session:
            for age in (timedelta(days=400), timedelta(days=1)):
                session.add(AuditEvent(created_at=now - age, type="auth.signed_in"))
            session.commit()
        app = create_app(make_settings(url, JOBS_SCHEDULES=True))
        try:
            with TestClient(app):
                wait_for(lambda: events_left(engine) == 1, 10, "the purge never ran")
        finally:
            app.state.database.dispose()
            engine.dispose()


def events_left(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one())


def wait_for(condition: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(failure)
