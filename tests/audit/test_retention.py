"""The retention job: events older than AUDIT_RETENTION_DAYS go, in batches, and nothing
younger; it is a periodic job the worker schedules (tests/jobs/test_periodic.py runs the
schedules for real)."""

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlmodel import Session, col, select

from core import jobs
from core.data import audit
from core.data.audit import AuditEvent
from core.data.clock import as_utc, utc_now
from core.jobs import queue as job_queue
from features.audit.jobs import purge_expired_events
from tests.conftest import make_settings

PURGE = "features.audit.jobs.purge_expired_events"


def add_aged(session_factory: Callable[[], Session], *ages: timedelta) -> None:
    now = utc_now()
    with session_factory() as session:
        session.add_all(AuditEvent(created_at=now - age, type="auth.signed_in") for age in ages)
        session.commit()


def ages_left(session_factory: Callable[[], Session]) -> list[int]:
    """Whole days old, of every event left, oldest first."""
    now = utc_now()
    with session_factory() as session:
        moments = session.exec(select(AuditEvent.created_at).order_by(col(AuditEvent.created_at)))
        return [(now - as_utc(moment)).days for moment in moments]


def run_purge(app: FastAPI) -> None:
    context = jobs.JobContext(app.state.settings, app.state.database, 1, None)
    purge_expired_events.run(context, {})


def test_the_purge_removes_only_events_past_the_retention(
    app: FastAPI, session_factory: Callable[[], Session]
) -> None:
    assert app.state.settings.AUDIT_RETENTION_DAYS == 365  # the default
    add_aged(
        session_factory,
        timedelta(days=800),
        timedelta(days=365, hours=1),
        timedelta(days=364, hours=23),
        timedelta(days=1),
        timedelta(0),
    )
    run_purge(app)
    assert ages_left(session_factory) == [364, 1, 0]
    run_purge(app)  # again: nothing more to do, nothing else goes
    assert ages_left(session_factory) == [364, 1, 0]


@pytest.mark.parametrize("settings_overrides", [{"AUDIT_RETENTION_DAYS": 30}])
def test_the_retention_is_the_setting(app: FastAPI, session_factory: Callable[[], Session]) -> None:
    add_aged(session_factory, timedelta(days=31), timedelta(days=29))
    run_purge(app)
    assert ages_left(session_factory) == [29]


def test_the_purge_deletes_in_bounded_batches(session_factory: Callable[[], Session]) -> None:
    add_aged(session_factory, *(timedelta(days=400 + n) for n in range(5)), timedelta(days=2))
    cutoff = utc_now() - timedelta(days=365)
    deleted = []
    with session_factory() as session:
        for _ in range(4):
            deleted.append(audit.purge_before(session, cutoff, batch_size=2))
    assert deleted == [2, 2, 1, 0]
    assert ages_left(session_factory) == [2]


def test_the_purge_runs_from_the_queue_as_the_worker_defers_it(
    app: FastAPI, session_factory: Callable[[], Session]
) -> None:
    """On PostgreSQL the worker defers it with its due time (procrastinate's `timestamp`);
    run here from the queue through the queue's own SQL."""
    if app.state.jobs is not None:
        pytest.skip("SQLite runs periodic jobs in-process (tests/jobs/test_periodic.py)")
    add_aged(session_factory, timedelta(days=366), timedelta(days=3))
    due = int(utc_now().timestamp())
    with session_factory() as session:
        job_queue.defer(session, PURGE, json.dumps({jobs.SCHEDULED_TIMESTAMP: due}))
        session.commit()
    assert jobs.run_due_jobs(app.state.settings, app.state.database) == 1
    assert ages_left(session_factory) == [3]


def test_it_is_declared_to_run_every_hour() -> None:
    declared = jobs.declared_jobs()[PURGE]
    assert declared.schedule == "17 * * * *"


@pytest.mark.parametrize("days", [0, -1, 36501, "a year"])
def test_a_retention_that_makes_no_sense_fails_at_start_up(days: object) -> None:
    with pytest.raises(ValidationError, match="AUDIT_RETENTION_DAYS"):
        make_settings("sqlite://", AUDIT_RETENTION_DAYS=days)
