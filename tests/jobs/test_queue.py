"""The queue's SQL against procrastinate's real schema, inside the test's rolled-back
transaction: enqueueing joins the caller's transaction, the operator's views and retries,
stalled-job recovery."""

from collections.abc import Callable
from importlib import resources

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlmodel import Session

from core import jobs
from core.jobs import queue as job_queue
from tests.conftest import alembic_config
from tests.jobs.sample_jobs import send_note
from tests.support import fresh_postgres_database, requires_postgres

pytestmark = requires_postgres

NOTE = "tests.jobs.sample_jobs.send_note"


@pytest.fixture(autouse=True)
def queue_mode() -> None:
    """Enqueue into PostgreSQL, whatever an earlier test's app installed."""
    jobs.use_in_process_runner(None)


def job_rows(connection: Connection) -> list[tuple[int, str, str, dict[str, object], int]]:
    rows = connection.execute(
        text("SELECT id, status::text, task_name, args, attempts FROM procrastinate_jobs")
    )
    return [tuple(row) for row in rows]


def fail(connection: Connection, job_id: int, *, worker_id: int | None = None) -> None:
    """Take the job as a worker would and record it failed, with procrastinate's functions."""
    taken = connection.execute(
        text("SELECT id FROM procrastinate_fetch_job_v2(NULL, :worker)"), {"worker": worker_id}
    ).scalar_one()
    assert taken == job_id
    connection.execute(
        text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)"), {"id": job_id}
    )


def take(connection: Connection, worker_id: int) -> int:
    job_id: int = connection.execute(
        text("SELECT id FROM procrastinate_fetch_job_v2(NULL, :worker)"), {"worker": worker_id}
    ).scalar_one()
    return job_id


def new_worker(connection: Connection, *, silent_for_seconds: float) -> int:
    worker_id: int = connection.execute(
        text(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - make_interval(secs => :silent)) RETURNING id"
        ),
        {"silent": silent_for_seconds},
    ).scalar_one()
    return worker_id


def test_a_committed_enqueue_leaves_a_job_with_its_arguments(
    session_factory: Callable[[], Session], connection: Connection
) -> None:
    with session_factory() as session:
        job_id = jobs.enqueue(session, send_note, recipient="jane@example.com", marker="kept")
        session.commit()
    assert job_rows(connection) == [
        (job_id, "todo", NOTE, {"recipient": "jane@example.com", "marker": "kept"}, 0)
    ]


def test_a_rolled_back_enqueue_leaves_nothing(
    session_factory: Callable[[], Session], connection: Connection
) -> None:
    with session_factory() as session:
        jobs.enqueue(session, send_note, recipient="jane@example.com", marker="gone")
        session.rollback()
    with session_factory() as session:
        jobs.enqueue(session, send_note, recipient="jane@example.com", marker="never committed")
        # closed without a commit: the transaction ends, and the job with it
    assert job_rows(connection) == []


def test_the_job_follows_the_writes_of_its_transaction(
    session_factory: Callable[[], Session], connection: Connection
) -> None:
    """The job row and the caller's own row commit or roll back as one."""
    connection.execute(text("CREATE TEMPORARY TABLE outbox_test (marker text)"))
    for outcome in ("commit", "rollback"):
        with session_factory() as session:
            session.execute(text("INSERT INTO outbox_test VALUES (:m)"), {"m": outcome})
            jobs.enqueue(session, send_note, recipient="jane@example.com", marker=outcome)
            getattr(session, outcome)()
    written = connection.execute(text("SELECT marker FROM outbox_test")).scalars().all()
    queued = [row[3]["marker"] for row in job_rows(connection)]
    assert written == queued == ["commit"]


def test_stats_count_by_status_and_age_the_oldest_waiting_job(
    session: Session, connection: Connection
) -> None:
    assert job_queue.stats(session) == job_queue.QueueStats(
        {"todo": 0, "doing": 0, "failed": 0}, None
    )
    old = jobs.enqueue(session, send_note, recipient="a@example.com", marker="old")
    jobs.enqueue(session, send_note, recipient="b@example.com", marker="new")
    failed = jobs.enqueue(session, send_note, recipient="c@example.com", marker="failed")
    assert old is not None
    assert failed is not None
    connection.execute(
        text("UPDATE procrastinate_events SET at = at - interval '90 seconds' WHERE job_id = :id"),
        {"id": old},
    )
    connection.execute(
        text("UPDATE procrastinate_jobs SET priority = 1 WHERE id = :id"), {"id": failed}
    )
    fail(connection, failed)
    stats = job_queue.stats(session)
    assert stats.by_status == {"todo": 2, "doing": 0, "failed": 1}
    assert stats.oldest_waiting_seconds is not None
    assert 89 < stats.oldest_waiting_seconds < 120
    assert stats.describe().startswith("todo=2 doing=0 failed=1, oldest waiting ")


def test_the_list_names_arguments_without_their_values(session: Session) -> None:
    first = jobs.enqueue(session, send_note, recipient="secret@example.com", marker="m1")
    second = jobs.enqueue(session, send_note, recipient="secret@example.com", marker="m2")
    listed = job_queue.list_jobs(session, status="todo", limit=10)
    assert [job.id for job in listed] == [second, first]  # newest first
    assert listed[0].argument_names == ["marker", "recipient"]
    assert listed[0].enqueued_at is not None
    assert "secret@example.com" not in repr(listed)
    assert job_queue.list_jobs(session, status="failed", limit=10) == []
    assert len(job_queue.list_jobs(session, status=None, limit=1)) == 1


def test_retrying_failed_jobs_queues_them_again_with_fresh_attempts(
    session: Session, connection: Connection
) -> None:
    failed = jobs.enqueue(session, send_note, recipient="a@example.com", marker="f")
    waiting = jobs.enqueue(session, send_note, recipient="b@example.com", marker="w")
    assert failed is not None
    assert waiting is not None
    fail(connection, failed)
    assert job_queue.retry_failed(session, [failed, waiting, 424242]) == [failed]
    rows = {row[0]: (row[1], row[4]) for row in job_rows(connection)}
    assert rows == {failed: ("todo", 0), waiting: ("todo", 0)}
    assert job_queue.retry_failed(session, [failed]) == []  # waiting, not failed


def test_retry_all_failed_takes_every_failed_job_and_nothing_else(
    session: Session, connection: Connection
) -> None:
    ids = [
        jobs.enqueue(session, send_note, recipient="a@example.com", marker=str(n)) for n in range(3)
    ]
    for job_id in ids[:2]:
        assert job_id is not None
        fail(connection, job_id)
    assert job_queue.retry_failed(session, None) == ids[:2]
    assert job_queue.retry_failed(session, None) == []


def test_jobs_of_a_silent_worker_are_queued_again_and_a_live_workers_are_not(
    session: Session, connection: Connection
) -> None:
    dead = new_worker(connection, silent_for_seconds=60)
    alive = new_worker(connection, silent_for_seconds=0)
    orphan = jobs.enqueue(session, send_note, recipient="a@example.com", marker="orphan")
    held = jobs.enqueue(session, send_note, recipient="b@example.com", marker="held")
    assert take(connection, dead) == orphan
    assert take(connection, alive) == held
    recovered = job_queue.recover_stalled(session, stalled_after=30, max_attempts=5)
    assert recovered == [job_queue.StalledJob(orphan, NOTE, attempt=1, failed=False)]
    rows = {row[0]: (row[1], row[4]) for row in job_rows(connection)}
    assert rows == {orphan: ("todo", 1), held: ("doing", 0)}
    remaining = connection.execute(text("SELECT id FROM procrastinate_workers")).scalars().all()
    assert remaining == [alive]  # the silent worker's row is pruned


def test_a_stalled_job_on_its_last_attempt_fails_instead(
    session: Session, connection: Connection
) -> None:
    dead = new_worker(connection, silent_for_seconds=60)
    job_id = jobs.enqueue(session, send_note, recipient="a@example.com", marker="last")
    assert take(connection, dead) == job_id
    recovered = job_queue.recover_stalled(session, stalled_after=30, max_attempts=1)
    assert recovered == [job_queue.StalledJob(job_id, NOTE, attempt=1, failed=True)]
    assert [(row[1], row[4]) for row in job_rows(connection)] == [("failed", 1)]


def test_enqueue_refuses_what_json_cannot_carry(session: Session, connection: Connection) -> None:
    with pytest.raises(TypeError, match="JSON"):
        jobs.enqueue(session, send_note, recipient="a@example.com", marker=object())  # type: ignore[arg-type]
    assert job_rows(connection) == []


CATALOG = {
    "columns": "SELECT table_name || '.' || column_name || ' ' || data_type || ' '"
    " || is_nullable || ' ' || coalesce(column_default, '') FROM information_schema.columns"
    " WHERE table_schema = 'public' AND table_name LIKE 'procrastinate%'",
    "indexes": "SELECT indexdef FROM pg_indexes"
    " WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%'",
    "constraints": "SELECT conrelid::regclass || ' ' || pg_get_constraintdef(oid)"
    " FROM pg_constraint WHERE conrelid::regclass::text LIKE 'procrastinate%'",
    "functions": "SELECT proname || '(' || pg_get_function_identity_arguments(oid) || ') '"
    " || md5(prosrc) FROM pg_proc WHERE proname LIKE 'procrastinate%'",
    "triggers": "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname LIKE 'procrastinate%'",
    "types": "SELECT t.typname || ' ' || coalesce(string_agg(e.enumlabel, ',' ORDER BY"
    " e.enumsortorder), '') FROM pg_type t LEFT JOIN pg_enum e ON e.enumtypid = t.oid"
    " WHERE t.typname LIKE 'procrastinate%' AND t.typtype IN ('e', 'c') GROUP BY t.typname",
}


def catalog(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                name: sorted(connection.execute(text(query)).scalars())
                for name, query in CATALOG.items()
            }
    finally:
        engine.dispose()


def test_the_migrations_build_the_schema_the_installed_procrastinate_expects() -> None:
    """Fails after a procrastinate upgrade until a migration brings the schema along
    (docs/jobs.md, Upgrading the queue)."""
    installed = (resources.files("procrastinate.sql") / "schema.sql").read_text()
    with fresh_postgres_database() as migrated, fresh_postgres_database() as reference:
        engine = create_engine(migrated)
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        engine.dispose()
        engine = create_engine(reference)
        with engine.begin() as connection:
            connection.exec_driver_sql(installed.replace("%", "%%"))
        engine.dispose()
        expected = catalog(reference)
        assert all(expected.values())  # the catalog queries see the schema at all
        assert catalog(migrated) == expected
