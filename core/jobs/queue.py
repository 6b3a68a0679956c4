"""The durable job queue's SQL: procrastinate's tables in PostgreSQL, read and written through
SQLAlchemy, so enqueueing joins the caller's transaction and the web process never loads
procrastinate or a second database driver (that would cost each web worker about 16 MiB).

Writes go only through procrastinate's versioned SQL functions (`procrastinate_*_v1/_v2`):
they are the interface procrastinate keeps stable across its schema migrations, and the
pinned version (requirements.txt, migrations/sql/) is what tests/jobs/test_queue.py runs
against. The one direct write resets `attempts` when an operator retries a failed job, so
that it gets a fresh set of tries.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

QUEUE = "default"

# The statuses a job moves through; succeeded jobs are deleted by the worker at once.
STATUSES = ("todo", "doing", "failed", "succeeded", "cancelled", "aborted")

_DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW("
    ":queue, :task_name, 0, NULL, NULL, CAST(:arguments AS jsonb), NULL"
    ")::procrastinate_job_to_defer_v1])) AS id"
)


def defer(session: Session, task_name: str, arguments_json: str) -> int:
    """Insert one job in the session's transaction; its id. Workers are woken by the
    NOTIFY that procrastinate's insert trigger sends, which PostgreSQL delivers on commit."""
    job_id: int = session.execute(
        _DEFER, {"queue": QUEUE, "task_name": task_name, "arguments": arguments_json}
    ).scalar_one()
    return job_id


@dataclass(frozen=True, slots=True)
class DueJob:
    """A job taken from the queue to run now (its status is `doing`)."""

    id: int
    task_name: str
    arguments: dict[str, Any]
    attempts: int  # tries before this one


_FETCH_DUE = text(
    "SELECT id, task_name, args, attempts FROM procrastinate_fetch_job_v2(ARRAY[:queue], NULL)"
)
_SUCCEEDED = text("SELECT procrastinate_finish_job_v1(:id, 'succeeded', true)")
_RETRY_AT = text("SELECT procrastinate_retry_job_v2(:id, :retry_at, NULL, NULL, NULL)")


def fetch_due(session: Session) -> DueJob | None:
    """Take the next due job, as a worker takes one (procrastinate's own fetch function), or
    None when nothing is due. The caller commits, runs it, then records how it ended."""
    row = session.execute(_FETCH_DUE, {"queue": QUEUE}).one()
    if row.id is None:
        return None
    return DueJob(row.id, row.task_name, dict(row.args), row.attempts)


def finish(session: Session, job_id: int, *, succeeded: bool) -> None:
    """Record a taken job's end: a success is deleted (as the worker does), a failure kept."""
    session.execute(_SUCCEEDED if succeeded else _FAIL, {"id": job_id})


def retry_later(session: Session, job_id: int, retry_at: datetime) -> None:
    """Put a taken job that failed back in the queue, due at `retry_at`."""
    session.execute(_RETRY_AT, {"id": job_id, "retry_at": retry_at})


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue depth by status and how long the oldest waiting job has waited."""

    by_status: dict[str, int]
    oldest_waiting_seconds: float | None  # since it was enqueued; None when nothing waits

    def describe(self) -> str:
        depth = " ".join(f"{status}={count}" for status, count in self.by_status.items())
        age = (
            "none waiting"
            if self.oldest_waiting_seconds is None
            else f"oldest waiting {self.oldest_waiting_seconds:.1f} s"
        )
        return f"{depth}, {age}"


_COUNTS = text("SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs GROUP BY 1")
_OLDEST_WAITING = text(
    "SELECT EXTRACT(EPOCH FROM now() - min(event.at)) FROM procrastinate_jobs job "
    "JOIN procrastinate_events event ON event.job_id = job.id AND event.type = 'deferred' "
    "WHERE job.status = 'todo'"
)


def stats(session: Session) -> QueueStats:
    """Depth by status (todo, doing and failed always present) and the oldest waiting job's
    age, for the worker's periodic log line and for a metrics endpoint."""
    counts = {"todo": 0, "doing": 0, "failed": 0}
    counts.update({row.status: row.n for row in session.execute(_COUNTS)})
    oldest = session.execute(_OLDEST_WAITING).scalar_one()
    return QueueStats(counts, None if oldest is None else float(oldest))


@dataclass(frozen=True, slots=True)
class QueuedJob:
    id: int
    status: str
    task_name: str
    attempts: int
    argument_names: list[str]  # names only: values may be personal data
    enqueued_at: datetime | None
    changed_at: datetime | None
    scheduled_at: datetime | None


_LIST = text(
    """
    SELECT job.id, job.status::text AS status, job.task_name, job.attempts, job.scheduled_at,
           ARRAY(SELECT jsonb_object_keys(job.args) ORDER BY 1) AS argument_names,
           (SELECT min(event.at) FROM procrastinate_events event
             WHERE event.job_id = job.id AND event.type = 'deferred') AS enqueued_at,
           (SELECT max(event.at) FROM procrastinate_events event
             WHERE event.job_id = job.id AND event.type <> 'scheduled') AS changed_at
      FROM procrastinate_jobs job
     WHERE CAST(:status AS text) IS NULL OR job.status::text = :status
     ORDER BY job.id DESC
     LIMIT :limit
    """
)


def list_jobs(session: Session, *, status: str | None, limit: int) -> list[QueuedJob]:
    """The newest `limit` jobs, of one status or all."""
    return [
        QueuedJob(
            id=row.id,
            status=row.status,
            task_name=row.task_name,
            attempts=row.attempts,
            argument_names=list(row.argument_names),
            enqueued_at=row.enqueued_at,
            changed_at=row.changed_at,
            scheduled_at=row.scheduled_at,
        )
        for row in session.execute(_LIST, {"status": status, "limit": limit})
    ]


_RETRY_FAILED = text(
    """
    WITH failed AS (
        SELECT id FROM procrastinate_jobs
         WHERE status = 'failed' AND (CAST(:every AS boolean) OR id = ANY(CAST(:ids AS bigint[])))
         ORDER BY id
         FOR UPDATE
    )
    SELECT id, procrastinate_retry_job_v2(id, now(), NULL, NULL, NULL) FROM failed
    """
)
_FRESH_ATTEMPTS = text(
    "UPDATE procrastinate_jobs SET attempts = 0 WHERE id = ANY(CAST(:ids AS bigint[]))"
)


def retry_failed(session: Session, ids: Sequence[int] | None) -> list[int]:
    """Put failed jobs (these ids, or every one with None) back in the queue, due now, each
    with a fresh set of attempts; the ids that were failed and now wait. Commits."""
    retried = [
        row.id
        for row in session.execute(_RETRY_FAILED, {"every": ids is None, "ids": list(ids or [])})
    ]
    if retried:
        session.execute(_FRESH_ATTEMPTS, {"ids": retried})
    session.commit()
    return retried


@dataclass(frozen=True, slots=True)
class StalledJob:
    id: int
    task_name: str
    attempt: int  # the attempt its dead worker was running
    failed: bool  # that was the last one allowed: now failed instead of queued again


_STALLED = text(
    """
    SELECT job.id, job.task_name, job.attempts
      FROM procrastinate_jobs job
      LEFT JOIN procrastinate_workers worker ON worker.id = job.worker_id
     WHERE job.status = 'doing'
       AND (job.worker_id IS NULL
            OR worker.last_heartbeat < now() - make_interval(secs => :stalled_after))
     ORDER BY job.id
       FOR UPDATE OF job SKIP LOCKED
    """
)
_REQUEUE = text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)")
_FAIL = text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)")
_PRUNE_WORKERS = text("SELECT procrastinate_prune_stalled_workers_v1(:stalled_after)")


def recover_stalled(
    session: Session, *, stalled_after: float, max_attempts: int
) -> list[StalledJob]:
    """Jobs held by workers silent for `stalled_after` seconds (killed, host lost) go back to
    the queue, due now; one whose attempts are used up becomes failed. Locking the rows and
    skipping locked ones lets every worker run this at once without requeueing a job twice.
    Commits."""
    recovered = []
    for row in session.execute(_STALLED, {"stalled_after": stalled_after}).all():
        attempt = row.attempts + 1
        give_up = attempt >= max_attempts
        session.execute(_FAIL if give_up else _REQUEUE, {"id": row.id})
        recovered.append(StalledJob(row.id, row.task_name, attempt, give_up))
    session.execute(_PRUNE_WORKERS, {"stalled_after": stalled_after})
    session.commit()
    return recovered
