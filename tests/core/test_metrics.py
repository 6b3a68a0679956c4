"""/metrics in one process: what it exports, how requests are labelled, and the app's own
families fed by real work (logins, a real SMTP server, bcrypt, database pools and threads).

The families live as long as the test process, so every test compares a scrape before and
after what it does. Multiprocess mode (gunicorn) is tested in tests/deploy.
"""

import asyncio
import contextvars
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route
from starlette.testclient import TestClient

from core import jobs
from core.config import Settings
from core.data.db import Database
from core.errors import TooManyRequestsError
from core.http import observability
from core.http.ratelimit import RateLimiter, parse_limit
from core.jobs.mail import Mailer, MailNotDelivered
from core.observability import metrics, metrics_files
from core.security import PasswordHasher
from tests.conftest import Account
from tests.support import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def increase(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much one series grew between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for sample, key in samples if sample == name and label in dict(key)}


class TestEndpoint:
    def test_it_serves_the_prometheus_text_format(self, client: TestClient) -> None:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE http_requests_total counter" in response.text
        assert "# TYPE http_request_duration_seconds histogram" in response.text

    def test_it_speaks_openmetrics_when_asked(self, client: TestClient) -> None:
        response = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.endswith("# EOF\n")

    def test_it_is_left_out_of_the_openapi_schema(self, client: TestClient) -> None:
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]

    def test_scrapes_are_neither_counted_nor_logged(
        self, client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("INFO", logger="app.request")
        scrape(client)
        samples = scrape(client)
        assert "/metrics" not in label_values(samples, "http_requests_total", "route")
        assert not [r for r in caplog.records if r.name == "app.request"]

    def test_this_process_reports_its_memory_and_cpu(self, client: TestClient) -> None:
        samples = scrape(client)
        assert value(samples, "process_resident_memory_bytes") > 10_000_000
        assert value(samples, "process_cpu_seconds_total") > 0


class TestMultiprocessScrape:
    """The scrape's side of multiprocess mode, in this process: it adds up the files other
    workers left, and never reads them while a worker is being retired."""

    @pytest.fixture
    def directory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        worker = (
            "from prometheus_client import Counter\n"
            "Counter('jobs', 'Jobs.', ['kind']).labels('mail').inc(7)\n"
        )
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=30)
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        return tmp_path

    def test_a_scrape_adds_up_the_workers_files(self, client: TestClient, directory: Path) -> None:
        assert value(scrape(client), "jobs_total", kind="mail") == 7

    def test_a_scrape_waits_while_a_worker_is_retired(
        self, client: TestClient, directory: Path
    ) -> None:
        answered = threading.Event()

        def scrape_in_background() -> None:
            scrape(client)
            answered.set()

        with metrics_files.locked(str(directory), exclusive=True):
            scraper = threading.Thread(target=scrape_in_background)
            scraper.start()
            assert not answered.wait(0.3)
        scraper.join(10)
        assert answered.is_set()


class TestDisabled:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"METRICS_ENABLED": False}

    def test_there_is_no_route_and_no_middleware(self, app: FastAPI, client: TestClient) -> None:
        assert client.get("/metrics").status_code == 404
        layer: Any = app.build_middleware_stack()
        for _ in range(20):  # down the chain of middleware to the router
            assert not isinstance(layer, observability.HttpMetricsMiddleware)
            layer = getattr(layer, "app", None)
        assert metrics.active() is None
        metrics.record_login("success")  # the helpers still work, and do nothing


class TestHttpMetrics:
    def test_ids_in_paths_share_their_route_template(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        admin = make_account(is_superuser=True)
        ids = [str(uuid.uuid4()) for _ in range(25)]
        before = scrape(client)
        for user_id in ids:
            assert client.get(f"/api/v1/users/{user_id}", headers=admin.headers).status_code == 404
        after = scrape(client)
        template = {"method": "GET", "route": "/api/v1/users/{user_id}", "status": "404"}
        assert increase(before, after, "http_requests_total", **template) == len(ids)
        routes = label_values(after, "http_requests_total", "route")
        assert not [route for route in routes if any(user_id in route for user_id in ids)]

    def test_paths_no_route_matches_share_one_label(self, client: TestClient) -> None:
        paths = [f"/{uuid.uuid4().hex}/{n}" for n in range(20)]
        before = scrape(client)
        for path in paths:
            assert client.get(path).status_code == 404
        after = scrape(client)
        unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
        assert increase(before, after, "http_requests_total", **unmatched) == len(paths)
        routes = label_values(after, "http_requests_total", "route")
        assert not [route for route in routes if any(path in route for path in paths)]

    def test_unknown_methods_share_one_label(self, client: TestClient) -> None:
        methods = [f"X{uuid.uuid4().hex[:8].upper()}" for _ in range(5)]
        before = scrape(client)
        for method in methods:
            assert client.request(method, "/api/v1/users/me").status_code == 405
        after = scrape(client)
        other = {"method": "OTHER", "route": "/api/v1/users/me", "status": "405"}
        assert increase(before, after, "http_requests_total", **other) == len(methods)
        assert not set(methods) & label_values(after, "http_requests_total", "method")

    def test_bodies_refused_before_routing_count_under_their_routes(
        self, client: TestClient, settings: Settings
    ) -> None:
        routes = ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/register"]
        before = scrape(client)
        for route in routes:
            response = client.post(route, content=b"x" * (settings.MAX_BODY_BYTES + 1))
            assert response.status_code == 413
        after = scrape(client)
        for route in set(routes):
            refused = {"method": "POST", "route": route, "status": "413"}
            assert increase(before, after, "http_requests_total", **refused) == routes.count(
                route
            ), route

    def test_a_response_is_counted_before_its_last_byte_leaves(self) -> None:
        # So a scrape sent after a response arrives always includes it.
        metrics.enable()
        registry = metrics.local_registry()
        assert registry is not None
        series = {"method": "GET", "route": "/counted", "status": "200"}

        def count() -> float:
            return value(parse(generate_latest(registry).decode()), "http_requests_total", **series)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        async def receive() -> Any:
            return {"type": "http.request", "body": b""}

        counts_seen: list[float] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.body":
                counts_seen.append(count())

        route = Route("/counted", endpoint=app)
        middleware = observability.HttpMetricsMiddleware(app, app_routes=[route])
        scope = {"type": "http", "method": "GET", "path": "/counted", "route": route}
        before = count()
        asyncio.run(middleware(scope, receive, send))
        assert counts_seen == [before + 1]

    def test_every_request_is_timed(self, client: TestClient) -> None:
        series = {"method": "GET", "route": "/health"}
        before = scrape(client)
        for _ in range(3):
            client.get("/health")
        after = scrape(client)
        count = "http_request_duration_seconds_count"
        assert increase(before, after, count, **series) == 3
        in_ten_seconds = value(after, "http_request_duration_seconds_bucket", le="10.0", **series)
        assert in_ten_seconds == value(after, count, **series)


class TestLogins:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"LOGIN_RATE_LIMIT": "3/minute"}

    def test_each_outcome_is_counted(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        before = scrape(client)
        account = make_account()  # logs in once
        form = {"username": account.email, "password": "not-the-password"}
        statuses = [client.post("/api/v1/auth/login", data=form).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        after = scrape(client)

        assert increase(before, after, "app_logins_total", outcome="success") == 1
        assert increase(before, after, "app_logins_total", outcome="failure") == 2
        assert increase(before, after, "app_logins_total", outcome="rate_limited") == 1
        assert increase(before, after, "app_rate_limit_rejections_total", limit="login") == 1


def test_a_limits_rejections_read_0_from_the_first_request_it_counts(client: TestClient) -> None:
    """So its first 429 shows as a rise: a series that appears with its first count shows
    that count to no rate()."""
    limiter = RateLimiter("")
    limit = parse_limit("1/minute")
    assert limit is not None
    namespace = f"limit-{uuid.uuid4().hex[:8]}"
    series = ("app_rate_limit_rejections_total", frozenset({("limit", namespace)}))
    assert series not in scrape(client)
    asyncio.run(limiter.hit(limit, namespace, "ip:192.0.2.1"))
    assert scrape(client)[series] == 0
    with pytest.raises(TooManyRequestsError):
        asyncio.run(limiter.hit(limit, namespace, "ip:192.0.2.1"))
    assert scrape(client)[series] == 1


class _Accepting:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    port = free_port()
    controller = Controller(_Accepting(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


def mailer(host: str, port: int) -> Mailer:
    return Mailer(
        host=host,
        port=port,
        user="",
        password="",
        starttls=False,
        ssl=False,
        sender="noreply@example.com",
        log_bodies=False,
    )


def test_mails_are_counted_sent_failed_and_skipped(client: TestClient, smtp_port: int) -> None:
    def send(server: Mailer) -> None:
        server.deliver(recipient="a@example.com", subject="s", text="t", html="<p>t</p>")

    before = scrape(client)
    send(mailer("127.0.0.1", smtp_port))
    with pytest.raises(MailNotDelivered, match=re.escape("mail to a***@example.com not deliv")):
        send(mailer("127.0.0.1", free_port()))  # nothing listens there
    send(mailer("", 587))  # no SMTP_HOST: logged, not sent
    after = scrape(client)
    for outcome in ("sent", "failed", "skipped"):
        assert increase(before, after, "app_mails_total", outcome=outcome) == 1, outcome


class TestBcryptQueue:
    # One hash at a time, each taking about a tenth of a second: the others queue behind it.
    @pytest.fixture
    def hasher(self) -> Iterator[PasswordHasher]:
        hasher = PasswordHasher(rounds=11, concurrency=1)
        yield hasher
        hasher.shutdown()

    def test_depth_counts_queued_and_running_hashes(
        self, client: TestClient, hasher: PasswordHasher
    ) -> None:
        hashed = hasher.hash("correct-horse-battery")
        depth = "app_bcrypt_queue_depth"
        base = value(scrape(client), depth)

        async def three_logins() -> tuple[float, float]:
            checks = [
                asyncio.create_task(hasher.verify_async("wrong-password", hashed)) for _ in range(3)
            ]
            await asyncio.sleep(0)  # every check is submitted
            during = value(scrape(client), depth)
            await asyncio.gather(*checks)
            return during, value(scrape(client), depth)

        during, after = asyncio.run(three_logins())
        assert (during - base, after - base) == (3, 0)

    def test_a_cancelled_waiting_hash_leaves_the_queue(
        self, client: TestClient, hasher: PasswordHasher
    ) -> None:
        hashed = hasher.hash("correct-horse-battery")
        depth = "app_bcrypt_queue_depth"
        base = value(scrape(client), depth)

        async def cancel_the_waiting_ones() -> tuple[float, float]:
            running, *waiting = [
                asyncio.create_task(hasher.verify_async("wrong-password", hashed)) for _ in range(3)
            ]
            await asyncio.sleep(0)
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            during = value(scrape(client), depth)
            await running
            return during, value(scrape(client), depth)

        during, after = asyncio.run(cancel_the_waiting_ones())
        assert (during - base, after - base) == (1, 0)


class TestDatabase:
    @pytest.fixture(autouse=True)
    def scrapes_take_no_database_thread(self, client: TestClient) -> None:
        """On PostgreSQL a scrape reads the job queue's depth through a database thread of
        its own; these tests count the threads' waits, so their scrapes leave it out."""
        metrics.watch_job_queue(None)

    @pytest.fixture
    def database(self, database_url: str, settings: Settings) -> Iterator[Database]:
        database = Database.from_settings(settings.model_copy(update={"DATABASE_POOL_SIZE": 3}))
        metrics.watch_pools(database.engines)
        yield database
        database.dispose()

    def test_connections_in_use_and_pool_size(self, client: TestClient, database: Database) -> None:
        label = metrics.pool_label(database.engines[0])
        before = value(scrape(client), "app_db_connections_in_use", database=label)

        def scrape_holding_a_connection(session: Any) -> float:
            session.connection()  # checks a connection out of the pool
            return value(scrape(client), "app_db_connections_in_use", database=label)

        during = asyncio.run(database.run(scrape_holding_a_connection))
        after = scrape(client)
        assert during - before == 1
        assert value(after, "app_db_connections_in_use", database=label) == before
        postgres = database.engines[0].dialect.name == "postgresql"
        # One pool per database URL: 3 connections on PostgreSQL here, SQLite's default 5.
        assert value(after, "app_db_pool_size", database=label) == (3 if postgres else 5)

    def test_time_waiting_for_a_database_thread(self, client: TestClient) -> None:
        threads = metrics.ObservedThreadPoolExecutor(1)
        release = threading.Event()
        before = scrape(client)
        try:
            blocker = threads.submit(release.wait, 5)
            queued = threads.submit(time.sleep, 0)
            waiting = value(scrape(client), "app_db_work_waiting")
            time.sleep(0.2)
            release.set()
            blocker.result(5)
            queued.result(5)
        finally:
            release.set()
            threads.shutdown()
        after = scrape(client)

        assert waiting - value(before, "app_db_work_waiting") == 1
        assert increase(before, after, "app_db_work_waiting") == 0
        assert increase(before, after, "app_db_thread_wait_seconds_count") == 2
        # The second call waited for the first, at least 0.2 s: above the 0.1 s bucket.
        assert increase(before, after, "app_db_thread_wait_seconds_bucket", le="0.1") == 1
        assert increase(before, after, "app_db_thread_wait_seconds_sum") >= 0.2

    @pytest.mark.parametrize("metrics_on", [True, False])
    def test_a_call_runs_in_its_callers_context(self, metrics_on: bool) -> None:
        # The current trace span travels this way into the database thread.
        request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
        request_id.set("caller-1")
        threads = metrics.ObservedThreadPoolExecutor(1)
        try:
            if not metrics_on:
                metrics.disable()
            assert threads.submit(request_id.get).result(5) == "caller-1"
        finally:
            metrics.enable()
            threads.shutdown()

    def test_a_call_cancelled_while_waiting_stops_waiting(self, client: TestClient) -> None:
        threads = metrics.ObservedThreadPoolExecutor(1)
        release = threading.Event()
        before = value(scrape(client), "app_db_work_waiting")
        try:
            threads.submit(release.wait, 5)
            assert threads.submit(time.sleep, 0).cancel()
            assert value(scrape(client), "app_db_work_waiting") == before
        finally:
            release.set()
            threads.shutdown()


class TestJobsRunHere:
    """In-process mode: the web process runs the jobs, so it exports their series (the
    worker does in queue mode: tests/deploy/test_dashboard_prometheus.py)."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"JOBS_MODE": "in-process"}

    def test_every_declared_job_has_its_series_before_it_runs(self, client: TestClient) -> None:
        samples = scrape(client)
        declared = jobs.declared_jobs()
        assert declared
        for name in declared:
            for outcome in metrics.JOB_OUTCOMES:
                labels = frozenset({("job_name", name), ("outcome", outcome)})
                assert ("app_jobs_processed_total", labels) in samples, (name, outcome)
            duration = ("app_job_duration_seconds_count", frozenset({("job_name", name)}))
            assert duration in samples, name


class TestCacheAndJobs:
    @pytest.fixture(autouse=True)
    def no_job_queue_after(self) -> Iterator[None]:
        yield
        metrics.watch_job_queue(None)

    def test_cache_look_ups_by_cache_and_result(self, client: TestClient) -> None:
        before = scrape(client)
        results: list[metrics.CacheResult] = ["hit", "hit", "miss", "error"]
        for result in results:
            metrics.record_cache("current_user", result)
        after = scrape(client)
        for result, count in (("hit", 2), ("miss", 1), ("error", 1)):
            labels = {"cache": "current_user", "result": result}
            assert increase(before, after, "app_cache_requests_total", **labels) == count

    def test_job_runs_by_job_and_outcome(self, client: TestClient) -> None:
        before = scrape(client)
        metrics.record_job("send_mail", "succeeded", seconds=0.2)
        metrics.record_job("send_mail", "failed", seconds=0.02)
        after = scrape(client)
        for outcome in ("succeeded", "failed"):
            labels = {"job_name": "send_mail", "outcome": outcome}
            assert increase(before, after, "app_jobs_processed_total", **labels) == 1
        count = "app_job_duration_seconds_count"
        assert increase(before, after, count, job_name="send_mail") == 2

    def test_the_job_queue_is_read_at_each_scrape(self, client: TestClient) -> None:
        depth = {"queued": 4, "running": 1}
        reads = 0

        async def read() -> metrics.JobQueueStats:
            nonlocal reads
            reads += 1
            return metrics.JobQueueStats(depth, oldest_waiting_age_seconds=12.5)

        metrics.watch_job_queue(read)
        first = scrape(client)
        depth["queued"] = 0
        second = scrape(client)
        assert reads == 2
        assert value(first, "app_job_queue_depth", status="queued") == 4
        assert value(first, "app_job_queue_depth", status="running") == 1
        assert value(first, "app_job_oldest_waiting_age_seconds") == 12.5
        assert value(second, "app_job_queue_depth", status="queued") == 0

    def test_a_failing_or_slow_queue_read_only_leaves_its_figures_out(
        self, client: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(observability, "JOB_QUEUE_READ_TIMEOUT_SECONDS", 0.05)

        async def broken() -> metrics.JobQueueStats:
            raise ConnectionError("database down")

        async def hung() -> metrics.JobQueueStats:
            await asyncio.sleep(5)
            raise AssertionError("unreachable")

        client.get("/health")
        for read in (broken, hung):
            metrics.watch_job_queue(read)
            samples = scrape(client)
            assert ("app_job_oldest_waiting_age_seconds", frozenset()) not in samples
            assert "/health" in label_values(samples, "http_requests_total", "route")
