"""Prometheus metrics: the families the app exports and the one-line helpers that feed them.

Core modules and features call the helpers (`record_login("success")`, ...) unconditionally.
They cost one attribute check while metrics are off (METRICS_ENABLED=false), and
prometheus-client is then never imported.

Under gunicorn every worker writes its samples to memory-mapped files in
PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py) and `/metrics`, whichever worker answers,
adds up every worker's files (core/observability/metrics_files.py). Counters and histograms are
summed over every worker that ever lived, so a restart loses nothing. Every gauge here is `livesum`:
each worker holds its own share (connections checked out, hashes queued, work waiting) and
the replica's figure is the sum over the workers alive now; a worker's share vanishes the
moment gunicorn reaps it, so a crashed worker's last value cannot linger (`liveall` would
give one series per pid for no question anyone asks; `max` or `mostrecent` would hide load).
Without the variable (uvicorn, tests) the values live in this process's memory.
"""

from __future__ import annotations

import contextvars
import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from core.errors import TooManyRequestsError, UnauthorizedError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from sqlalchemy import Engine

P = ParamSpec("P")
T = TypeVar("T")

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Requests here take from about a millisecond (/health) to half a second (a bcrypt login):
# buckets from 5 ms to 10 s, 11 of them, so each route x method costs 14 series.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A free database thread is normally there within microseconds: finer buckets at the bottom.
DB_THREAD_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
JOB_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

LoginOutcome = Literal["success", "failure", "rate_limited"]
MailOutcome = Literal["sent", "failed", "skipped"]
CacheResult = Literal["hit", "miss", "error"]
JobOutcome = Literal["succeeded", "retried", "failed"]

LOGIN_OUTCOMES: tuple[LoginOutcome, ...] = ("success", "failure", "rate_limited")
MAIL_OUTCOMES: tuple[MailOutcome, ...] = ("sent", "failed", "skipped")
JOB_OUTCOMES: tuple[JobOutcome, ...] = ("succeeded", "retried", "failed")


class Families:
    """Every metric family the app writes to, created once per process."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.http_requests: Counter = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration: Histogram = Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to the last byte of its response.",
            ["method", "route"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        )
        self.db_connections_in_use: Gauge = Gauge(
            "app_db_connections_in_use",
            "Database connections checked out of the pools, by database.",
            ["database"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.db_pool_size: Gauge = Gauge(
            "app_db_pool_size",
            "Connections the pools keep, by database (overflow comes on top).",
            ["database"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.db_work_waiting: Gauge = Gauge(
            "app_db_work_waiting",
            "Units of database work waiting for a database thread.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.db_thread_wait: Histogram = Histogram(
            "app_db_thread_wait_seconds",
            "Time a unit of database work waited for a database thread.",
            buckets=DB_THREAD_WAIT_BUCKETS,
            registry=registry,
        )
        self.bcrypt_queue_depth: Gauge = Gauge(
            "app_bcrypt_queue_depth",
            "Password hashes and checks queued or running.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.logins: Counter = Counter(
            "app_logins_total",
            "Login attempts by outcome: success, failure, rate_limited.",
            ["outcome"],
            registry=registry,
        )
        self.rate_limit_rejections: Counter = Counter(
            "app_rate_limit_rejections_total",
            "Requests refused with 429, by limit (login, register, recovery, ...).",
            ["limit"],
            registry=registry,
        )
        self.mails: Counter = Counter(
            "app_mails_total",
            "Mails by outcome: sent, failed, skipped (no SMTP_HOST).",
            ["outcome"],
            registry=registry,
        )
        self.cache_requests: Counter = Counter(
            "app_cache_requests_total",
            "Cache look-ups by cache and result: hit, miss, error.",
            ["cache", "result"],
            registry=registry,
        )
        # `job_name`, not `job`: Prometheus gives every scraped series a `job` label of its
        # own (the scrape job), and would rename this one to `exported_job`.
        self.jobs_processed: Counter = Counter(
            "app_jobs_processed_total",
            "Background jobs run, by job name and outcome: succeeded, retried, failed.",
            ["job_name", "outcome"],
            registry=registry,
        )
        self.job_duration: Histogram = Histogram(
            "app_job_duration_seconds",
            "Time one background job ran, by job name.",
            ["job_name"],
            buckets=JOB_DURATION_BUCKETS,
            registry=registry,
        )
        # Series that exist from the start read 0 instead of being absent, so rate() and
        # the dashboard work before the first login or the first mail. A series that appears
        # with its first count hides that count from rate() and increase(), which see only
        # changes between scrapes: see also expect_jobs and expect_rate_limit.
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for mail_outcome in MAIL_OUTCOMES:
            self.mails.labels(mail_outcome)


@dataclass(frozen=True, slots=True)
class JobQueueStats:
    """What the job queue holds right now, read from its table at scrape time."""

    depth_by_status: Mapping[str, int]
    oldest_waiting_age_seconds: float | None


JobQueueReader = Callable[[], Awaitable[JobQueueStats]]


@dataclass
class _State:
    families: Families | None = None  # built on first use, kept for the process's life
    registry: CollectorRegistry | None = None  # single-process mode only
    active: Families | None = None  # None while metrics are off
    job_queue_reader: JobQueueReader | None = None
    rate_limits: set[str] = field(default_factory=set)  # limits whose rejections read 0 or more


_state = _State()


def multiprocess_directory() -> str | None:
    """Where workers share their samples, or None when this process keeps them in memory."""
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None


def enable() -> Families:
    """Turn the helpers on, creating the families on first use (imports prometheus-client)."""
    if _state.families is None:
        from prometheus_client import CollectorRegistry, disable_created_metrics

        # `_created` series double every counter's output and no dashboard reads them
        # (multiprocess mode never has them): the same output in both modes.
        disable_created_metrics()
        registry = None if multiprocess_directory() else CollectorRegistry(auto_describe=True)
        _state.families = Families(registry)
        _state.registry = registry
    _state.active = _state.families
    return _state.families


def disable() -> None:
    _state.active = None
    _state.job_queue_reader = None


def active() -> Families | None:
    return _state.active


def local_registry() -> CollectorRegistry | None:
    """The registry holding this process's samples when not in multiprocess mode."""
    return _state.registry


# --- helpers called from core modules and features -----------------------------------------


def record_login(outcome: LoginOutcome) -> None:
    if (families := _state.active) is not None:
        families.logins.labels(outcome).inc()


def counts_login_outcomes(
    login: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[T]]:
    """Count every call of a login use case by outcome, from how it ends.

    A return is a success; the app's 429 error a rate-limited attempt; its 401 error a
    failure (unknown email, wrong password, inactive account: one outcome, as the answer).
    Anything else (the database or the limit store down) is not a login outcome.
    """

    @functools.wraps(login)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            result = await login(*args, **kwargs)
        except TooManyRequestsError:
            record_login("rate_limited")
            raise
        except UnauthorizedError:
            record_login("failure")
            raise
        record_login("success")
        return result

    return counted


def record_rate_limit_rejection(limit: str) -> None:
    if (families := _state.active) is not None:
        families.rate_limit_rejections.labels(limit).inc()


def expect_rate_limit(limit: str) -> None:
    """A limit is about to count a request: from now on its rejections read 0 rather than
    nothing, so its first 429 (which takes at least the limit's number of requests) shows as
    a rise. Called for every counted request: a set look-up once the limit is known."""
    families = _state.active
    if families is not None and limit not in _state.rate_limits:
        families.rate_limit_rejections.labels(limit)
        _state.rate_limits.add(limit)


def record_mail(outcome: MailOutcome) -> None:
    if (families := _state.active) is not None:
        families.mails.labels(outcome).inc()


def record_cache(cache: str, result: CacheResult) -> None:
    """One cache look-up; `cache` is a fixed name per cache (never a key)."""
    if (families := _state.active) is not None:
        families.cache_requests.labels(cache, result).inc()


def record_job(job_name: str, outcome: JobOutcome, seconds: float | None = None) -> None:
    """One run of a background job; `job_name` is the job's registered name (never an id)."""
    if (families := _state.active) is not None:
        families.jobs_processed.labels(job_name, outcome).inc()
        if seconds is not None:
            families.job_duration.labels(job_name).observe(seconds)


def expect_jobs(job_names: Iterable[str]) -> None:
    """Every outcome and the duration of each job read 0 before its first run, so the first
    retry or failure of a job shows on the dashboard instead of being its series' first value."""
    if (families := _state.active) is not None:
        for name in job_names:
            for outcome in JOB_OUTCOMES:
                families.jobs_processed.labels(name, outcome)
            families.job_duration.labels(name)


def watch_job_queue(read: JobQueueReader | None) -> None:
    """Read the job queue's depth and oldest waiting job at every scrape (None: stop).

    The figures are facts about one table, the same seen from any worker, so the worker that
    answers the scrape reads them fresh; no worker has to keep a gauge up to date.
    """
    _state.job_queue_reader = read


def job_queue_reader() -> JobQueueReader | None:
    return _state.job_queue_reader


def track_password_hashing(future: Future[Any]) -> None:
    """Count a bcrypt call from the moment it is queued until it has run (or was cancelled)."""
    if (families := _state.active) is not None:
        depth = families.bcrypt_queue_depth
        depth.inc()
        future.add_done_callback(lambda _: depth.dec())


class ObservedThreadPoolExecutor(ThreadPoolExecutor):
    """A thread pool for work done on a request's behalf, observed like the request:

    - each call runs in a copy of the caller's context, so the request's trace span is the
      parent of the SQL spans the call makes (a bare executor would start new traces);
    - how long each call waited for a free thread, and how many are waiting, are measured
      (`app_db_thread_wait_seconds`, `app_db_work_waiting`).
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        families = _state.active
        if families is None:
            return super().submit(functools.partial(context.run, fn, *args, **kwargs))
        waiting = families.db_work_waiting
        wait_time = families.db_thread_wait
        queued_at = time.perf_counter()
        started = False

        def run() -> T:
            nonlocal started
            started = True
            waiting.dec()
            wait_time.observe(time.perf_counter() - queued_at)
            return context.run(fn, *args, **kwargs)

        def cancelled_before_start(_: Future[T]) -> None:
            if not started:
                waiting.dec()

        waiting.inc()
        future = super().submit(run)
        future.add_done_callback(cancelled_before_start)
        return future


def pool_label(engine: Engine) -> str:
    """`postgresql://db:5432/app`: which database, without user or password."""
    url = engine.url
    port = f":{url.port}" if url.port else ""
    return f"{url.get_backend_name()}://{url.host or ''}{port}/{url.database or ''}"


def watch_pools(engines: Iterable[Engine]) -> None:
    """Keep `app_db_connections_in_use` and `app_db_pool_size` for these engines' pools.

    Checkout and checkin events, not a reading at scrape time: in multiprocess mode only the
    worker that answers a scrape runs code then, and it cannot see the other workers' pools.
    Engines on the same database share a label, and their figures add up.
    """
    if (families := _state.active) is None:
        return
    from sqlalchemy import event
    from sqlalchemy.pool import QueuePool

    sizes: dict[str, int] = {}
    for engine in engines:
        label = pool_label(engine)
        pool = engine.pool
        sizes[label] = sizes.get(label, 0) + (pool.size() if isinstance(pool, QueuePool) else 1)
        in_use = families.db_connections_in_use.labels(label)

        def on_checkout(*_: Any, gauge: Gauge = in_use) -> None:
            gauge.inc()

        def on_checkin(*_: Any, gauge: Gauge = in_use) -> None:
            gauge.dec()

        event.listen(pool, "checkout", on_checkout)
        event.listen(pool, "checkin", on_checkin)
    for label, size in sizes.items():
        families.db_pool_size.labels(label).set(size)
