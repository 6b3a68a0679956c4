"""Background jobs: declare one in one line, enqueue it in the transaction that needs it.

This folder: the API below (declare, enqueue, retries, the in-process runner), the queue's SQL
(queue.py), the worker process (worker.py) and outgoing mail (mail.py). It may import
core.data, core.observability, core.config and core.errors; never the HTTP edge. The web
process never imports worker.py: procrastinate loads only in `manage.py worker`.

    @jobs.job
    def send_welcome(context: jobs.JobContext, *, user_id: str) -> None:
        ...  # context.settings, context.database; raise to have it retried

    def register(session: Session, ...) -> User:          # a service function
        session.add(user)
        jobs.enqueue(session, send_welcome, user_id=str(user.id))
        session.commit()                                   # the job exists from here on

On PostgreSQL (JOBS_MODE=queue, the default there) `enqueue` inserts the job into the
procrastinate queue through the session's own connection, so the job commits or rolls back
with the session's transaction: a rolled-back write never runs its job. `python manage.py
worker` runs the jobs: at least once each, retried with exponential backoff and jitter up to
JOBS_MAX_ATTEMPTS times, then kept as `failed` for `python manage.py jobs retry`.

On SQLite (JOBS_MODE=in-process) there is no queue: the job runs in a thread of the process
that enqueued it, right after the commit, with the same retries. Nothing is stored, so a job
still running or waiting for a retry is lost when that process stops: fine for `make dev`
and tests, never what production should run.

A job may run more than once (a worker killed after the work but before recording it, a job
still running when its worker's shutdown timeout ends), so a job must be safe to repeat, or
harmless when repeated (a second identical mail).

Periodic jobs run on a schedule (cron: minute hour day month weekday, and optionally seconds
as a sixth field), with no arguments:

    @jobs.periodic("17 * * * *")                          # every hour, at :17
    def purge_expired(context: jobs.JobContext) -> None:
        ...  # context.scheduled_at: the time this run was due

On PostgreSQL every worker (`manage.py worker`) defers them through procrastinate's periodic
tasks; the queue's `procrastinate_periodic_defers` table lets one worker, and one only, defer
each due time, so any number of workers run each due time once (and a due time missed by at
most 10 minutes, the workers all down meanwhile, still runs when one starts). In-process
(SQLite, `make dev`) a timer thread of the runner submits them when due; several processes on
one SQLite file each run them. JOBS_SCHEDULES=false leaves a process's schedules to the
others. Either way a periodic job, like any job, must be safe to repeat.
"""

import json
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec

from croniter import croniter
from sqlmodel import Session

from core.config import Settings
from core.data.commits import after_commit
from core.data.db import Database
from core.jobs import queue as job_queue
from core.observability import metrics
from core.observability.masking import mask_addresses

P = ParamSpec("P")

logger = logging.getLogger("app.jobs")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job gets besides its own arguments."""

    settings: Settings
    database: Database
    attempt: int  # 1 on the first try
    job_id: int | None  # the queue's id; None when jobs run in-process
    # A periodic job's due time for this run; None for a job someone enqueued.
    scheduled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Job(Generic[P]):
    """A declared job: a plain function whose arguments are JSON keyword arguments."""

    name: str
    function: Callable[Concatenate[JobContext, P], None]
    # Cron, for a periodic job (`periodic`); None for one that runs when enqueued.
    schedule: str | None = None

    def run(self, context: JobContext, arguments: dict[str, Any]) -> None:
        """Call the function. A periodic run's due time arrives as the queue's `timestamp`
        argument (seconds since the epoch) and goes to `context.scheduled_at` instead."""
        arguments = dict(arguments)
        timestamp = arguments.pop(SCHEDULED_TIMESTAMP, None) if self.schedule else None
        if timestamp is not None:
            scheduled_at = datetime.fromtimestamp(timestamp, UTC)
            context = JobContext(
                context.settings, context.database, context.attempt, context.job_id, scheduled_at
            )
        function: Callable[..., None] = self.function  # JSON arguments: checked by the caller
        function(context, **arguments)


# The argument procrastinate's periodic deferrer gives each run of a periodic task.
SCHEDULED_TIMESTAMP = "timestamp"


_declared: dict[str, Job[Any]] = {}


def job(function: Callable[Concatenate[JobContext, P], None]) -> Job[P]:
    """Declare a job. Its name is where it lives (`module.function`): a queued job finds its
    code by that name, so renaming or moving a job strands the ones already queued (they
    fail, and `manage.py jobs retry` runs them once the code answers to the name again)."""
    return _declare(function, schedule=None)


def periodic(schedule: str) -> Callable[[Callable[[JobContext], None]], Job[[]]]:
    """Declare a job that runs on `schedule` (cron; a sixth field counts seconds), taking
    no arguments; it may be enqueued by hand too."""
    if not croniter.is_valid(schedule):
        raise ValueError(f"not a cron schedule: {schedule!r}")

    def declare(function: Callable[[JobContext], None]) -> Job[[]]:
        return _declare(function, schedule=schedule)

    return declare


def _declare(function: Callable[Concatenate[JobContext, P], None], schedule: str | None) -> Job[P]:
    name = f"{function.__module__}.{function.__qualname__}"
    declared = Job(name=name, function=function, schedule=schedule)
    existing = _declared.get(name)
    if existing is not None and existing.function is not function:
        raise ValueError(f"two jobs are named {name}")
    _declared[name] = declared
    return declared


def next_due(schedule: str, after: float) -> float:
    """The first time (seconds since the epoch) after `after` that `schedule` names."""
    due: float = croniter(schedule, after).get_next(float)
    return due


def declared_jobs() -> dict[str, Job[Any]]:
    """Every job declared so far (by the modules imported so far), by name."""
    return dict(_declared)


def enqueue(session: Session, job: Job[P], /, *args: P.args, **kwargs: P.kwargs) -> int | None:
    """Run `job(**kwargs)` once `session`'s transaction commits; never if it rolls back.

    Returns the job's id in the queue (None in in-process mode). Arguments are keyword-only
    and must survive a JSON round trip unchanged (str, int, float, bool, None, lists and
    dicts of those): a UUID or a datetime goes in as a string.
    """
    if args:
        raise TypeError(f"{job.name}: jobs take keyword arguments only")
    arguments = _json_arguments(job.name, kwargs)
    runner = _in_process_runner
    if runner is not None:
        runner.run_after_commit(session, job, arguments)
        return None
    if session.get_bind().dialect.name != "postgresql":
        raise RuntimeError(
            "jobs need PostgreSQL, or an in-process runner (create_app starts one on SQLite)"
        )
    return job_queue.defer(session, job.name, json.dumps(arguments))


def _json_arguments(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = json.loads(json.dumps(kwargs, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: arguments must be JSON values: {error}") from None
    if decoded != kwargs:  # a tuple would come back a list, an int key a string
        raise TypeError(f"{name}: arguments must come back from JSON unchanged")
    return decoded


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            max_attempts=settings.JOBS_MAX_ATTEMPTS,
            base_seconds=settings.JOBS_RETRY_BASE_SECONDS,
            max_seconds=settings.JOBS_RETRY_MAX_SECONDS,
        )

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds before the try after failed try `attempt` (1-based): exponential, capped,
        and jittered over its upper half, so jobs that failed together (a mail server outage)
        do not all come back in the same instant."""
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 60))
        return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - spread, not a secret

    def after_failure(
        self, name: str, job_id: int | None, attempt: int, error: BaseException
    ) -> float | None:
        """Seconds until the next try of a job whose try `attempt` raised `error`, or None
        when it has had its tries; writes the outcome's log line either way. The worker, the
        in-process runner and `run_due_jobs` all decide here."""
        if self.gives_up_after(attempt):
            log_gave_up(name, job_id, attempt, error)
            return None
        delay = self.delay(attempt)
        log_retrying(name, job_id, attempt, self, delay, describe_error(error))
        return delay


# --- log lines, the same from the worker and in-process ------------------------------------


def describe_error(error: BaseException) -> str:
    """`Type: message`, with any address the message quotes masked (an SMTP refusal names
    the recipient; a database error may quote a row)."""
    return mask_addresses(f"{type(error).__name__}: {error}")


def _label(name: str, job_id: int | None) -> str:
    return f"job {name}" if job_id is None else f"job {job_id} {name}"


def log_succeeded(name: str, job_id: int | None, attempt: int, seconds: float) -> None:
    metrics.record_job(name, "succeeded", seconds)
    logger.info(
        "%s succeeded (attempt %d, %.3f s)",
        _label(name, job_id),
        attempt,
        seconds,
        extra={"job": name, "job_id": job_id, "outcome": "succeeded", "attempt": attempt},
    )


def log_retrying(
    name: str, job_id: int | None, attempt: int, policy: RetryPolicy, delay: float, error: str
) -> None:
    metrics.record_job(name, "retried")
    logger.warning(
        "%s failed (attempt %d of %d), retrying in %.1f s: %s",
        _label(name, job_id),
        attempt,
        policy.max_attempts,
        delay,
        error,
        extra={"job": name, "job_id": job_id, "outcome": "retrying", "attempt": attempt},
    )


def log_gave_up(name: str, job_id: int | None, attempt: int, error: BaseException) -> None:
    metrics.record_job(name, "failed")
    where = (
        "lost (in-process jobs are not kept)"
        if job_id is None
        else f"kept as failed: python manage.py jobs retry {job_id}"
    )
    trace = "".join(traceback.format_exception(error))
    logger.error(
        "%s failed for good after %d attempts, %s: %s\n%s",
        _label(name, job_id),
        attempt,
        where,
        describe_error(error),
        mask_addresses(trace),
        extra={"job": name, "job_id": job_id, "outcome": "failed", "attempt": attempt},
    )


# --- in-process mode ------------------------------------------------------------------------

ContextSource = Callable[[], tuple[Settings, Database]]


class InProcessJobs:
    """Runs jobs in this process after their transaction commits (JOBS_MODE=in-process).

    Not durable: a job still running or waiting for a retry is lost when the process stops.
    `context` gives the settings and database at run time, so a test that swaps the app's
    database after start-up has its jobs use the new one.
    """

    def __init__(self, settings: Settings, context: ContextSource) -> None:
        self._context = context
        self._policy = RetryPolicy.from_settings(settings)
        self._executor = ThreadPoolExecutor(settings.JOBS_CONCURRENCY, thread_name_prefix="job")
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._active = 0
        self._scheduler: threading.Thread | None = None

    def run_after_commit(self, session: Session, job: Job[Any], arguments: dict[str, Any]) -> None:
        after_commit(session, lambda: self._submit(job, arguments))

    def start_schedules(self, periodic_jobs: Iterable[Job[Any]]) -> None:
        """Run these periodic jobs whenever their schedules say, until `stop`."""
        scheduled = [job for job in periodic_jobs if job.schedule is not None]
        if not scheduled or self._scheduler is not None:
            return
        logger.info(
            "periodic jobs run in this process: %s",
            ", ".join(f"{job.name} ({job.schedule})" for job in scheduled),
        )
        self._scheduler = threading.Thread(
            target=self._run_schedules, args=(scheduled,), name="job-schedules", daemon=True
        )
        self._scheduler.start()

    def _run_schedules(self, scheduled: list[Job[Any]]) -> None:
        schedules = {job.name: job.schedule for job in scheduled if job.schedule is not None}
        by_name = {job.name: job for job in scheduled}
        now = time.time()
        due = {name: next_due(schedule, now) for name, schedule in schedules.items()}
        while True:
            name = min(due, key=lambda job_name: due[job_name])
            if self._stopping.wait(max(0.0, due[name] - time.time())):
                return
            self._submit(by_name[name], {}, scheduled_at=datetime.fromtimestamp(due[name], UTC))
            # From now, not from the due time: a process that slept through several due
            # times (a laptop's lid closed) runs the job once, not once for each.
            due[name] = next_due(schedules[name], max(due[name], time.time()))

    def _submit(
        self, job: Job[Any], arguments: dict[str, Any], scheduled_at: datetime | None = None
    ) -> None:
        with self._idle:
            if self._stopping.is_set():
                # Raising here would tell the caller its commit failed; it did not.
                logger.warning("job %s lost: committed while the process stops", job.name)
                return
            self._active += 1
        self._executor.submit(self._run, job, arguments, scheduled_at)

    def _run(
        self, job: Job[Any], arguments: dict[str, Any], scheduled_at: datetime | None = None
    ) -> None:
        try:
            for attempt in range(1, self._policy.max_attempts + 1):
                settings, database = self._context()
                started = time.monotonic()
                try:
                    context = JobContext(settings, database, attempt, None, scheduled_at)
                    job.run(context, arguments)
                except Exception as error:
                    delay = self._policy.after_failure(job.name, None, attempt, error)
                    if delay is None:
                        return
                    if self._stopping.wait(delay):
                        logger.warning(
                            "job %s lost: the process stopped before its retry", job.name
                        )
                        return
                else:
                    log_succeeded(job.name, None, attempt, time.monotonic() - started)
                    return
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is running or waiting for a retry; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def stop(self, timeout: float) -> None:
        """Give running jobs up to `timeout` seconds; retries not yet due are dropped."""
        with self._idle:
            self._stopping.set()
        self.wait_idle(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)


_in_process_runner: InProcessJobs | None = None


def use_in_process_runner(runner: InProcessJobs | None) -> None:
    """Run enqueued jobs with `runner` from now on; None sends them to the queue again.
    The composition root (main.create_app) calls this once with what the settings ask for."""
    global _in_process_runner
    _in_process_runner = runner
    if runner is not None:
        logger.warning(
            "jobs run inside this process after each commit (JOBS_MODE=in-process): "
            "not durable, a job still running or waiting for a retry is lost when it stops"
        )


# --- the queue's due jobs, run in the calling thread -----------------------------------------

# A job that enqueues another is fine; a chain this long is a loop.
MAX_JOBS_PER_RUN = 1000


def run_due_jobs(settings: Settings, database: Database) -> int:
    """Run, in this thread, every job the queue holds that is due now (those they enqueue
    included) until none is left; how many ran.

    Each job is taken, finished or put back for a retry through the queue's own SQL functions
    (core/jobs/queue.py), as the worker does, with the same retry policy and log lines. For
    tests, whose rolled-back transaction no worker process can see; a deployment runs
    `manage.py worker`.
    """
    policy = RetryPolicy.from_settings(settings)
    for ran in range(MAX_JOBS_PER_RUN):
        with database.session() as session:
            due = job_queue.fetch_due(session)
            session.commit()
        if due is None:
            return ran
        declared = _declared.get(due.task_name)
        attempt = due.attempts + 1
        started = time.monotonic()
        try:
            if declared is None:
                raise LookupError(f"no job is declared as {due.task_name}")
            declared.run(JobContext(settings, database, attempt, due.id), due.arguments)
        except Exception as error:
            delay = policy.after_failure(due.task_name, due.id, attempt, error)
            with database.session() as session:
                if delay is None:
                    job_queue.finish(session, due.id, succeeded=False)
                else:
                    retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                    job_queue.retry_later(session, due.id, retry_at)
                session.commit()
            continue
        log_succeeded(due.task_name, due.id, attempt, time.monotonic() - started)
        with database.session() as session:
            job_queue.finish(session, due.id, succeeded=True)
            session.commit()
    raise RuntimeError(f"more than {MAX_JOBS_PER_RUN} jobs in one run: do jobs enqueue a loop?")
