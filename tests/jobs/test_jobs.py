"""Declaring and enqueueing jobs, the retry policy, the settings that shape them."""

import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlmodel import Session

from core import jobs
from core.config import Settings
from tests.conftest import make_settings
from tests.jobs.sample_jobs import send_note

SQLITE = "sqlite:///./never-created.db"
POSTGRES = "postgresql+psycopg2://app@db/app"


@pytest.fixture
def no_runner() -> None:
    jobs.use_in_process_runner(None)


def test_a_job_is_named_after_where_it_lives() -> None:
    assert send_note.name == "tests.jobs.sample_jobs.send_note"
    assert jobs.declared_jobs()[send_note.name] is send_note


def test_two_functions_cannot_share_a_job_name() -> None:
    def send_note(context: jobs.JobContext) -> None:
        pass

    send_note.__module__ = "tests.jobs.sample_jobs"
    send_note.__qualname__ = "send_note"
    with pytest.raises(ValueError, match=r"two jobs are named tests\.jobs\.sample_jobs\.send_note"):
        jobs.job(send_note)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"recipient": "a@example.com", "marker": object()}, "must be JSON values"),
        ({"recipient": "a@example.com", "marker": float("nan")}, "must be JSON values"),
        ({"recipient": "a@example.com", "marker": ("a", "b")}, "come back from JSON unchanged"),
    ],
)
def test_enqueue_refuses_arguments_json_would_not_carry_unchanged(
    session: Session, arguments: dict[str, object], problem: str
) -> None:
    with pytest.raises(TypeError, match=problem):
        jobs.enqueue(session, send_note, **arguments)  # type: ignore[arg-type]


def test_enqueue_takes_keyword_arguments_only(session: Session) -> None:
    with pytest.raises(TypeError, match="keyword arguments only"):
        jobs.enqueue(session, send_note, "a@example.com")  # type: ignore[call-arg]


def test_without_postgresql_or_a_runner_enqueue_refuses(session: Session, no_runner: None) -> None:
    if session.get_bind().dialect.name == "postgresql":
        pytest.skip("PostgreSQL has the durable queue")
    with pytest.raises(RuntimeError, match="jobs need PostgreSQL"):
        jobs.enqueue(session, send_note, recipient="a@example.com", marker="m")


def test_retry_delays_double_up_to_the_cap_with_jitter_over_the_upper_half() -> None:
    policy = jobs.RetryPolicy(max_attempts=10, base_seconds=10, max_seconds=300)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (9, 300), (500, 300)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (attempt, delays)
        assert max(delays) - min(delays) > ceiling / 4  # spread, not one value


def test_the_policy_gives_up_at_the_last_attempt() -> None:
    policy = jobs.RetryPolicy(max_attempts=3, base_seconds=1, max_seconds=1)
    assert [policy.gives_up_after(attempt) for attempt in (1, 2, 3)] == [False, False, True]


def test_error_descriptions_mask_addresses() -> None:
    error = OSError("recipient jane.doe@example.com refused")
    assert jobs.describe_error(error) == "OSError: recipient j***@example.com refused"


@pytest.mark.parametrize(
    ("url", "mode", "in_process"),
    [
        (SQLITE, "auto", True),
        (POSTGRES, "auto", False),
        (POSTGRES, "in-process", True),
        (POSTGRES, "queue", False),
    ],
)
def test_the_mode_follows_the_database_unless_set(url: str, mode: str, in_process: bool) -> None:
    assert make_settings(url, JOBS_MODE=mode).jobs_run_in_process is in_process


def test_the_suite_runs_the_job_mode_production_runs_on_its_database(app: FastAPI) -> None:
    """On PostgreSQL requests enqueue into the real queue, in their own transaction, as in
    production (its enqueue flushes a request's pending writes: a 409 turned 500 hid there);
    on SQLite jobs run in-process, which is what runs there."""
    on_postgresql = app.state.settings.DATABASE_URL.startswith("postgresql")
    assert app.state.settings.jobs_run_in_process is not on_postgresql
    assert (app.state.jobs is None) is on_postgresql


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"DATABASE_URL": SQLITE, "JOBS_MODE": "queue"}, "JOBS_MODE=queue needs PostgreSQL"),
        (
            {"JOBS_HEARTBEAT_SECONDS": 10, "JOBS_STALLED_AFTER_SECONDS": 20},
            "must exceed 2 x JOBS_HEARTBEAT_SECONDS",
        ),
        (
            {"JOBS_RETRY_BASE_SECONDS": 60, "JOBS_RETRY_MAX_SECONDS": 30},
            "at least JOBS_RETRY_BASE_SECONDS",
        ),
        ({"JOBS_CONCURRENCY": 0}, "greater than or equal to 1"),
    ],
)
def test_job_settings_that_cannot_work_are_refused(
    overrides: dict[str, object], problem: str
) -> None:
    values: dict[str, object] = {"DATABASE_URL": POSTGRES, **overrides}
    with pytest.raises(ValidationError, match=problem):
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
