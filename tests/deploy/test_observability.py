"""Metrics and traces from the production server command: gunicorn, two uvicorn workers, a
real PostgreSQL database.

- every scrape reads the same totals, whichever worker answers it (the access log says which
  worker served each request and each scrape);
- ids in paths do not make series;
- workers recycled by max_requests or killed outright neither lose nor double counts, and
  leave no files behind;
- traces reach an OTLP/HTTP receiver this test runs, with the request's SQL inside them and
  the trace id in the request's log line.
"""

import gzip
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from core.observability import metrics_files
from tests.conftest import ROOT
from tests.support import (
    free_port,
    fresh_postgres_database,
    migrate,
    requires_postgres,
    server_env,
    wait_until_healthy,
)

pytestmark = requires_postgres

PASSWORD = "correct-horse-battery"
DEADLINE_SECONDS = 20.0
# 2026-12-01 10:00:00,000 [4242] access 127.0.0.1:5000 - "GET /health HTTP/1.1" 200
ACCESS_LINE = re.compile(r'\[(\d+)\] access \S+ - "(\w+) (\S+) HTTP/[\d.]+" (\d+)')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Gunicorn:
    process: "subprocess.Popen[bytes]"
    base_url: str
    log_path: Path
    metrics_dir: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids_that_served(self, method: str, path: str) -> set[int]:
        return {
            int(match.group(1))
            for match in ACCESS_LINE.finditer(self.output())
            if (match.group(2), match.group(3)) == (method, path)
        }

    def get(self, path: str, **headers: str) -> httpx2.Response:
        # A new connection each time, so the two workers share the requests.
        return httpx2.get(f"{self.base_url}{path}", headers=headers, timeout=10)

    def get_through_restarts(self, path: str) -> httpx2.Response:
        """GET, again if a worker closed the connection before reading the request.

        A worker leaving after max_requests may still hold a connection the kernel queued
        for it; it closes it unread, so that request never reached the app and is not
        counted. Load balancers retry such requests the same way.
        """
        for _ in range(5):
            try:
                return self.get(path)
            except (httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError):
                time.sleep(0.05)
        return self.get(path)

    def scrape(self) -> Samples:
        return self._parse(self.get("/metrics"))

    def scrape_through_restarts(self) -> Samples:
        return self._parse(self.get_through_restarts("/metrics"))

    def _parse(self, response: httpx2.Response) -> Samples:
        assert response.status_code == 200, self.output()[-3000:]
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def access_token(self) -> str:
        email = f"observed-{uuid.uuid4().hex[:10]}@example.com"
        registered = httpx2.post(
            f"{self.base_url}/api/v1/auth/register",
            json={"name": "Observed", "email": email, "password": PASSWORD},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        login = httpx2.post(
            f"{self.base_url}/api/v1/auth/login",
            data={"username": email, "password": PASSWORD},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        token: str = login.json()["access_token"]
        return token


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextmanager
def gunicorn(directory: Path, database_url: str, **settings: str) -> Iterator[Gunicorn]:
    """`gunicorn -c gunicorn.conf.py main:app` with two workers and its access log on."""
    home = directory / "home"
    home.mkdir()
    metrics_dir = directory / "metrics"
    port = free_port()
    env = server_env(
        database_url,
        HOME=str(home),
        PORT=str(port),
        WEB_CONCURRENCY="2",
        ACCESS_LOG="1",
        # Named here, so the test can look inside it.
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        **settings,
    )
    log_path = directory / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "main:app"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Gunicorn(process, f"http://127.0.0.1:{port}", log_path, metrics_dir)
    try:
        wait_until_healthy(server.base_url, process, server.output)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_SECONDS} s: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Gunicorn]:
    with gunicorn(tmp_path_factory.mktemp("gunicorn"), database_url) as running:
        yield running


class TestTwoWorkers:
    def test_every_scrape_reads_exactly_n_whichever_worker_answers(self, server: Gunicorn) -> None:
        me = {"Authorization": f"Bearer {server.access_token()}"}
        served = 0
        # At least 40, and until both workers have served some.
        while served < 40 or len(server.pids_that_served("GET", "/api/v1/users/me")) < 2:
            assert server.get("/api/v1/users/me", **me).status_code == 200
            served += 1
            assert served < 400, "one worker served every request"
        workers = server.pids_that_served("GET", "/api/v1/users/me")

        reads: list[tuple[float, float]] = []
        while server.pids_that_served("GET", "/metrics") != workers or len(reads) < 10:
            samples = server.scrape()
            reads.append(
                (
                    value(
                        samples,
                        "http_requests_total",
                        method="GET",
                        route="/api/v1/users/me",
                        status="200",
                    ),
                    value(
                        samples,
                        "http_request_duration_seconds_count",
                        method="GET",
                        route="/api/v1/users/me",
                    ),
                )
            )
            assert len(reads) < 100, "one worker answered every scrape"
        assert set(reads) == {(served, served)}
        # Each worker's process figures, whichever one answered.
        memory = {
            dict(labels)["pid"]
            for (name, labels) in samples
            if name == "process_resident_memory_bytes"
        }
        assert memory == {str(pid) for pid in workers}

    def test_random_ids_make_one_series(self, server: Gunicorn) -> None:
        ids = [str(uuid.uuid4()) for _ in range(30)]
        for user_id in ids:
            assert server.get(f"/api/v1/users/{user_id}").status_code == 401
        unmatched = [f"/{secrets.token_hex(8)}" for _ in range(10)]
        for path in unmatched:
            assert server.get(path).status_code == 404
        samples = server.scrape()
        routes = {
            dict(labels)["route"] for name, labels in samples if name == "http_requests_total"
        }
        assert not [r for r in routes if any(part in r for part in ids + unmatched)]
        by_id = {"method": "GET", "route": "/api/v1/users/{user_id}", "status": "401"}
        assert value(samples, "http_requests_total", **by_id) == len(ids)
        nowhere = {"method": "GET", "route": "<unmatched>", "status": "404"}
        assert value(samples, "http_requests_total", **nowhere) == len(unmatched)


def test_recycled_and_killed_workers_neither_lose_nor_double_counts(
    tmp_path: Path, database_url: str
) -> None:
    # Every worker exits after 10 requests (scrapes included) and gunicorn starts another.
    with gunicorn(tmp_path, database_url, GUNICORN_CMD_ARGS="--max-requests 10") as server:
        health = {"method": "GET", "route": "/health", "status": "200"}
        # Start-up probes count too, even those whose client gave up waiting and that a
        # worker answered later: start from the count once it has settled.
        served = -1.0
        while served != (served := value(server.scrape(), "http_requests_total", **health)):
            time.sleep(0.3)
        for _ in range(24):
            assert server.get_through_restarts("/health").status_code == 200
            served += 1
        live = metrics_files.live_worker_pids(str(server.metrics_dir))
        os.kill(live[0], signal.SIGKILL)
        eventually(
            lambda: live[0] not in metrics_files.live_worker_pids(str(server.metrics_dir)),
            "the killed worker is reaped",
        )
        for _ in range(5):
            assert server.get_through_restarts("/health").status_code == 200
            served += 1

        reads = {
            value(server.scrape_through_restarts(), "http_requests_total", **health)
            for _ in range(6)
        }
        assert reads == {served}
        assert len(server.pids_that_served("GET", "/health")) > 3, "no worker was recycled"

        def only_live_workers_and_archives() -> bool:
            names = {name for name in os.listdir(server.metrics_dir) if name.endswith(".db")}
            pids = metrics_files.live_worker_pids(str(server.metrics_dir))
            expected = {"counter_archive.db", "histogram_archive.db"}
            for pid in pids:
                expected |= {f"counter_{pid}.db", f"histogram_{pid}.db", f"gauge_livesum_{pid}.db"}
            return len(pids) == 2 and names == expected

        eventually(only_live_workers_and_archives, "exited workers' files folded and removed")


# --- traces ------------------------------------------------------------------------------


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: what a collector or Jaeger listens with on :4318."""

    port: int
    spans: list[Span] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [span for span in self.spans if span.trace_id.hex() == trace_id]

    def all_spans(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            export = ExportTraceServiceRequest.FromString(body)
            with received.lock:
                received.paths.append(self.path)
                for resource_spans in export.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        received.spans.extend(scope_spans.spans)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http_server = ThreadingHTTPServer(("127.0.0.1", received.port), Handler)
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    yield received
    http_server.shutdown()
    http_server.server_close()


def attributes(span: Span) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        found[attribute.key] = getattr(attribute.value, kind) if kind else None
    return found


def database_system(span: Span) -> Any:
    """Older and newer semantic conventions name the attribute differently."""
    found = attributes(span)
    return found.get("db.system.name", found.get("db.system"))


def test_traces_reach_an_otlp_receiver_with_sql_inside_and_the_id_in_the_log(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> None:
    redis_url = os.environ.get("TEST_REDIS_URL", "")
    settings = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds between batches
        # JSON request lines, at INFO, as in production.
        "ENVIRONMENT": "production",
        "LOG_LEVEL": "INFO",
        "REDIS_URL": redis_url,
    }
    with gunicorn(tmp_path, database_url, **settings) as server:
        token = server.access_token()
        server.get("/health")
        server.get("/metrics")
        trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
        response = server.get(
            "/api/v1/users/me",
            Authorization=f"Bearer {token}",
            traceparent=f"00-{trace_id}-{caller_span}-01",
            **{"X-Request-ID": "traced-request-1"},
        )
        assert response.status_code == 200

        def server_span() -> Span | None:
            for span in receiver.trace(trace_id):
                if span.kind == Span.SPAN_KIND_SERVER:
                    return span
            return None

        eventually(lambda: server_span() is not None, "the request's span is exported")
        root = server_span()
        assert root is not None
        assert root.name == "GET /api/v1/users/me"
        assert attributes(root)["http.route"] == "/api/v1/users/me"
        assert root.parent_span_id.hex() == caller_span  # the caller's trace goes on

        spans = {span.span_id: span for span in receiver.trace(trace_id)}

        def inside_the_request(span: Span) -> bool:
            while span.parent_span_id in spans:
                span = spans[span.parent_span_id]
            return span.span_id == root.span_id

        sql = [span for span in spans.values() if database_system(span) == "postgresql"]
        assert sql, [span.name for span in spans.values()]
        assert all(inside_the_request(span) for span in sql)

        request_lines = [
            json.loads(line)
            for line in server.output().splitlines()
            if line.startswith("{") and '"app.request"' in line
        ]
        traced = [line for line in request_lines if line["request_id"] == "traced-request-1"]
        assert [line["trace_id"] for line in traced] == [trace_id]

        untraced = [attributes(span).get("url.path") for span in receiver.all_spans()]
        assert "/health" not in untraced
        assert "/metrics" not in untraced
        assert set(receiver.paths) == {"/v1/traces"}

        if redis_url:
            # The login's rate limit is counted in Redis: its commands are in the login's trace.
            logins = [
                span
                for span in receiver.all_spans()
                if span.kind == Span.SPAN_KIND_SERVER and span.name == "POST /api/v1/auth/login"
            ]
            assert logins
            login_trace = {span.trace_id for span in logins}
            redis_spans = [
                span
                for span in receiver.all_spans()
                if span.trace_id in login_trace and database_system(span) == "redis"
            ]
            assert redis_spans
