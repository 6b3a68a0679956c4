"""The job worker process (`python manage.py worker`): procrastinate's worker running the jobs
declared with `core.jobs.job`.

What it guarantees, with the JOBS_* settings:
- Jobs run at least once. Each takes one of JOBS_CONCURRENCY slots and runs in a thread of
  its own, so a slow job never stalls the heartbeat or the other jobs.
- A job that raises is tried again after RetryPolicy.delay (exponential, capped, jittered),
  up to JOBS_MAX_ATTEMPTS tries; then it stays `failed` (the dead letters) until
  `python manage.py jobs retry`.
- SIGTERM or SIGINT: no new job is taken; jobs in hand get JOBS_SHUTDOWN_TIMEOUT seconds to
  finish, then go back to the queue, and the process exits: the stop takes at most
  JOBS_SHUTDOWN_TIMEOUT plus a few database round trips. A second signal kills at once.
- A worker that dies holding jobs (SIGKILL, lost host) stops its heartbeat; once it has been
  silent JOBS_STALLED_AFTER_SECONDS, another worker puts its jobs back in the queue at its
  next check (every JOBS_HEARTBEAT_SECONDS), so they run again within
  JOBS_STALLED_AFTER_SECONDS + JOBS_HEARTBEAT_SECONDS + JOBS_POLL_SECONDS (45 s by default).

Duplicates: a job runs twice when its worker dies (or its shutdown timeout ends) after the
job did its work but before the worker recorded it. Nothing else repeats a job.
"""

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
from procrastinate.jobs import Job as QueuedJob
from sqlalchemy.engine import make_url

from core import jobs
from core.config import Settings
from core.data.db import Database
from core.jobs import queue as job_queue
from core.observability import metrics

logger = logging.getLogger("app.jobs.worker")


def libpq_conninfo(database_url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg2://...) as libpq reads it, for psycopg 3."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class _Backoff(procrastinate.BaseRetryStrategy):
    """Every failure goes through here: decide the retry and write the outcome's log line."""

    def __init__(self, policy: jobs.RetryPolicy) -> None:
        self.policy = policy

    def get_retry_decision(
        self, *, exception: BaseException, job: QueuedJob
    ) -> procrastinate.RetryDecision | None:
        attempt = job.attempts + 1
        if isinstance(exception, asyncio.CancelledError):
            # The shutdown timeout ended while the job ran: it goes back to the queue.
            logger.warning(
                "job %s %s released at shutdown (attempt %d); it will run again",
                job.id,
                job.task_name,
                attempt,
                extra={"job": job.task_name, "job_id": job.id, "outcome": "released"},
            )
            return procrastinate.RetryDecision(retry_at=datetime.now(UTC))
        delay = self.policy.after_failure(job.task_name, job.id, attempt, exception)
        if delay is None:
            return None
        return procrastinate.RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=delay))


async def _in_daemon_thread(work: Callable[[], None]) -> None:
    """Run `work` in a thread of its own and wait for it. Unlike an executor's thread, a
    daemon thread does not hold the process open: when the shutdown timeout ends, the job
    is released and the process exits even if the work is still blocked."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():  # cancelled at shutdown: nobody waits for the outcome any more
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        outcome: BaseException | None = None
        try:
            work()
        except BaseException as error:  # handed to the awaiting coroutine, which decides
            outcome = error
        # RuntimeError: the event loop is already closed, the process is exiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=target, name="job", daemon=True).start()
    await done


def _task_for(job: jobs.Job[Any], settings: Settings, database: Database) -> Callable[..., Any]:
    async def run(context: procrastinate.JobContext, **arguments: Any) -> None:
        queued = context.job
        attempt = queued.attempts + 1
        job_context = jobs.JobContext(settings, database, attempt, queued.id)
        started = time.monotonic()
        await _in_daemon_thread(lambda: job.run(job_context, arguments))
        jobs.log_succeeded(job.name, queued.id, attempt, time.monotonic() - started)

    return run


class _RedactArguments(logging.Filter):
    """procrastinate logs job arguments (personal data: addresses) in its messages and extra
    fields. Its lines about job outcomes are replaced by ours; its other lines lose the job's
    arguments before they are written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("procrastinate"):
            return True
        if str(getattr(record, "action", "")).startswith(_OWN_LINES):
            return False
        job = getattr(record, "job", None)
        if isinstance(job, dict):
            record.job = {"id": job.get("id"), "task_name": job.get("task_name")}
        if hasattr(record, "jobs"):
            record.jobs = "(redacted)"
        return True


# procrastinate's actions for the lines core.jobs writes itself, without arguments.
_OWN_LINES = ("job_", "start_job", "loaded_job", "ending_job")


def _quiet_procrastinate() -> None:
    """Only procrastinate's warnings and errors, never with job arguments. The filter sits on
    the handlers, so it sees the records of every procrastinate logger, children included."""
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    redact = _RedactArguments()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)


async def _every(seconds: float, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except Exception:  # the database may be away for a moment: try again next round
            logger.exception("periodic worker task failed")


def _serve_metrics(port: int, job_names: Iterable[str]) -> None:
    """Job outcomes and durations for Prometheus, on the worker's own port: the worker
    serves no other HTTP, and its samples live in its own memory (it is one process), whatever
    PROMETHEUS_MULTIPROC_DIR a web server's configuration left in the environment. Every
    job's series is there at 0 from the first scrape, before the job first runs."""
    os.environ.pop(metrics.MULTIPROCESS_DIR_VARIABLE, None)
    metrics.enable()
    metrics.expect_jobs(job_names)
    from prometheus_client import start_http_server

    registry = metrics.local_registry()
    assert registry is not None  # no multiprocess directory in this process any more
    try:
        start_http_server(port, registry=registry)
    except OSError as error:  # the port is taken: run the jobs all the same
        logger.error("job metrics not served on port %d: %s", port, error)
        return
    logger.info("job metrics on port %d (/metrics)", port)


async def serve(settings: Settings) -> None:
    """Run the worker until SIGTERM or SIGINT."""
    _quiet_procrastinate()
    declared = jobs.declared_jobs()
    if settings.METRICS_ENABLED and settings.JOBS_METRICS_PORT:
        _serve_metrics(settings.JOBS_METRICS_PORT, declared)
    policy = jobs.RetryPolicy.from_settings(settings)
    database = Database.from_settings(settings)
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_conninfo(settings.DATABASE_URL),
        # The LISTEN connection is separate; this pool serves fetches, results and heartbeats.
        min_size=1,
        max_size=settings.JOBS_CONCURRENCY + 2,
        kwargs={"connect_timeout": settings.DATABASE_CONNECT_TIMEOUT},
    )
    app = procrastinate.App(connector=connector)
    backoff = _Backoff(policy)
    schedules = []
    for name, job in declared.items():
        queued_task = app.task(name=name, pass_context=True, retry=backoff)(
            _task_for(job, settings, database)
        )
        if job.schedule is not None and settings.JOBS_SCHEDULES:
            # Every worker defers it; procrastinate_periodic_defers lets one of them, and
            # one only, defer each due time.
            app.periodic(cron=job.schedule)(queued_task)
            schedules.append(f"{name} ({job.schedule})")

    async def recover_stalled() -> None:
        def work() -> list[job_queue.StalledJob]:
            with database.session() as session:
                return job_queue.recover_stalled(
                    session,
                    stalled_after=settings.JOBS_STALLED_AFTER_SECONDS,
                    max_attempts=policy.max_attempts,
                )

        for stalled in await asyncio.to_thread(work):
            logger.warning(
                "job %s %s: its worker stopped answering during attempt %d; %s",
                stalled.id,
                stalled.task_name,
                stalled.attempt,
                "no attempts left, now failed" if stalled.failed else "queued again",
                extra={"job": stalled.task_name, "job_id": stalled.id, "outcome": "stalled"},
            )

    async def log_stats() -> None:
        def work() -> job_queue.QueueStats:
            with database.session(read_only=True) as session:
                return job_queue.stats(session)

        stats = await asyncio.to_thread(work)
        logger.info(
            "job queue: %s",
            stats.describe(),
            extra={
                "queue": stats.by_status,
                "oldest_waiting_seconds": stats.oldest_waiting_seconds,
            },
        )

    logger.info(
        "job worker starting: %d at once, up to %d attempts, %g s to finish at shutdown; "
        "jobs: %s; on a schedule: %s",
        settings.JOBS_CONCURRENCY,
        policy.max_attempts,
        settings.JOBS_SHUTDOWN_TIMEOUT,
        ", ".join(sorted(declared)) or "none declared",
        ", ".join(sorted(schedules)) or "none",
    )
    try:
        async with app.open_async():
            side_tasks = [
                asyncio.create_task(_every(settings.JOBS_HEARTBEAT_SECONDS, recover_stalled)),
                asyncio.create_task(_every(settings.JOBS_STATS_SECONDS, log_stats)),
            ]
            try:
                await app.run_worker_async(
                    name="jobs",
                    concurrency=settings.JOBS_CONCURRENCY,
                    shutdown_graceful_timeout=settings.JOBS_SHUTDOWN_TIMEOUT,
                    update_heartbeat_interval=settings.JOBS_HEARTBEAT_SECONDS,
                    stalled_worker_timeout=settings.JOBS_STALLED_AFTER_SECONDS,
                    fetch_job_polling_interval=settings.JOBS_POLL_SECONDS,
                    # Succeeded jobs go (their arguments may be personal data); failed stay.
                    delete_jobs="successful",
                    install_signal_handlers=True,
                )
            finally:
                for task in side_tasks:
                    task.cancel()
                await asyncio.gather(*side_tasks, return_exceptions=True)
    finally:
        database.dispose()
    logger.info("job worker stopped")


async def idle_until_stopped() -> None:
    """In-process mode: nothing is queued, so nothing to run; wait for SIGTERM or SIGINT
    (so `make dev` can start a worker whatever the database)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.warning(
        "job worker idle: JOBS_MODE is in-process (the default on SQLite), so jobs run inside "
        "the process that enqueues them and nothing is queued here"
    )
    await stop.wait()


def run(settings: Settings) -> int:
    asyncio.run(idle_until_stopped() if settings.jobs_run_in_process else serve(settings))
    return 0
