"""Benchmark: the app, served as in production, against a bare FastAPI ceiling.

    .venv/bin/python bench/run.py                   # full run, about 5 minutes on 2 cores
    .venv/bin/python bench/run.py --quick           # one short round, to check that it works
    .venv/bin/python bench/run.py --users 1000000   # the same against a million accounts

It creates, seeds and drops its own PostgreSQL database (BENCH_DATABASE_URL names the server),
drives both apps with wrk on 127.0.0.1 only, prints one table and the targets, and writes
everything to bench/results/latest.json. Figures from a shared machine are noisy: read the
ratios, which are measured side by side in one run.
"""

import argparse
import http.client
import json
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import dataset
import loadgen
import metrics_cost
import report
import servers
from dataset import Account
from loadgen import Load, Request, WrkResult
from passlib.context import CryptContext
from report import Measurement, Observations

BCRYPT_ROUNDS = 12
USER_COUNT = 10_000
PAGE_SIZE = 100
# Starlette runs sync routes and dependencies on 40 threads; the tutorial pattern of the
# ceiling can deadlock above that many requests per worker (the 256-connection runs show it),
# so the side-by-side runs stay below it.
CONNECTIONS = 32
LOGIN_CONNECTIONS = 4
PROBE_CONNECTIONS = 4
FLOOD_CONNECTIONS = 32
HIGH_CONNECTIONS = 256
SINGLE_CONNECTIONS = 32
# At 256 connections on one worker, no request may wait longer than this.
SLOW_SECONDS = 3.0
LOGIN_PATH = "/api/v1/auth/login"
ME_PATH = "/api/v1/users/me"
API_KEYS_PATH = "/api/v1/api-keys"
LIST_PATH = f"/api/v1/users?limit={PAGE_SIZE}"


@dataclass(frozen=True)
class Plan:
    rounds: int
    # wrk takes whole seconds only.
    seconds: int
    warmup_seconds: int
    cold_starts: int
    verify_samples: int


FULL = Plan(rounds=3, seconds=5, warmup_seconds=1, cold_starts=3, verify_samples=5)
QUICK = Plan(rounds=1, seconds=2, warmup_seconds=1, cold_starts=1, verify_samples=2)


@dataclass
class Bench:
    plan: Plan
    users: int
    work_dir: Path
    env: dict[str, str]
    login_request: Request
    backends: dataset.BackendCpu
    measurements: dict[str, Measurement] = field(default_factory=dict)
    rss_kib: dict[str, list[int]] = field(default_factory=dict)
    cold_start_s: dict[str, list[float]] = field(default_factory=dict)
    health_after_high_load: dict[str, int] = field(default_factory=dict)
    bcrypt_verify_ms: float = 0.0
    cache_counts: dict[str, float] = field(default_factory=dict)

    def measure(
        self,
        key: str,
        endpoint: str,
        server: servers.Server,
        load: Load,
        *,
        with_cpu: bool = True,
    ) -> WrkResult:
        app_name = servers.application_name(server.app)
        db_cpu_before = {
            pid: servers.processes_cpu_seconds([pid])
            for pid in self.backends.backend_pids(app_name)
        }
        cpu_before = servers.settled_cpu_seconds(server.pid)
        result = loadgen.run(load, self.work_dir)
        cpu_spent = servers.settled_cpu_seconds(server.pid) - cpu_before
        # Backends opened during the run count in full; those that closed are lost.
        db_cpu_spent = sum(
            servers.processes_cpu_seconds([pid]) - db_cpu_before.get(pid, 0.0)
            for pid in self.backends.backend_pids(app_name)
        )
        entry = self.measurements.setdefault(
            key, Measurement(key, endpoint, server.app, server.label(), load.connections)
        )
        entry.runs.append(result)
        if with_cpu and result.requests:
            # wrk keeps one request in flight per connection; the server finishes the ones
            # still open when wrk stops, and the settled CPU reading includes them.
            served = result.requests + load.connections
            entry.cpu_ms_per_request.append(cpu_spent * 1000 / served)
            entry.db_cpu_ms_per_request.append(db_cpu_spent * 1000 / served)
        print(
            f"  {key:<24} {result.requests_per_second:>9.0f} req/s  p50 {result.p50_ms:7.2f} ms"
            f"  p99 {result.p99_ms:8.2f} ms  errors {result.errors}",
            flush=True,
        )
        return result


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def log_in(port: int, account: Account) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            LOGIN_PATH,
            body=urlencode({"username": account.email, "password": account.password}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"login as {account.email} failed: {response.status} {body}")
    token: str = body["access_token"]
    return token


def issue_api_key(port: int, token: str) -> str | None:
    """An API key for the signed-in account; None from an app that has no API keys."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            API_KEYS_PATH,
            body=json.dumps({"name": "bench"}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    if response.status == 404:
        return None
    if response.status != 201:
        raise RuntimeError(f"issuing an API key failed: {response.status} {body}")
    key: str = body["key"]
    return key


def expect_ok(port: int, path: str, headers: dict[str, str] | None = None) -> None:
    status = servers.http_status(port, path, headers)
    if status != 200:
        raise RuntimeError(f"GET {path} on port {port} answered {status}, not 200")


def bearer(token: str) -> Request:
    return Request(headers=(("Authorization", f"Bearer {token}"),))


def get_json(port: int, path: str, headers: dict[str, str]) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body: dict[str, Any] = json.loads(response.read())
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body}")
    return body


def scrape_cache_counts(port: int) -> dict[str, float]:
    """The app's cache hits and misses so far, by cache (its /metrics, summed over workers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("app_cache_requests_total{"):
            labels, _, value = line.rpartition(" ")
            cache = labels.split('cache="')[1].split('"')[0]
            result = labels.split('result="')[1].split('"')[0]
            counts[f"{cache} {result}"] = counts.get(f"{cache} {result}", 0.0) + float(value)
    return counts


def last_page_paths(port: int, admin: Request, users: int) -> tuple[str | None, str]:
    """The last full page of the admin list, once by cursor and once by offset: the two ways a
    client reaches the end of a long list."""
    depth = max(users - PAGE_SIZE, 0)
    before = get_json(port, f"{LIST_PATH}&offset={max(depth - PAGE_SIZE, 0)}", dict(admin.headers))
    if "next_cursor" not in before:  # an app from before cursors (BENCH_APP_ROOT)
        return None, f"{LIST_PATH}&offset={depth}"
    cursor = before["next_cursor"]
    if not cursor:
        raise RuntimeError("the page before the last one has no next_cursor")
    return f"{LIST_PATH}&{urlencode({'cursor': cursor})}", f"{LIST_PATH}&offset={depth}"


def start_pair(bench: Bench, shape: str) -> tuple[servers.Server, servers.Server]:
    app = servers.start("app", shape, free_port(), bench.env, bench.work_dir)
    bare = servers.start("bare", shape, free_port(), bench.env, bench.work_dir)
    servers.wait_until_ready(app, "/health")
    servers.wait_until_ready(bare, "/ping")
    return app, bare


def record_rss(bench: Bench, key: str, server: servers.Server) -> None:
    bench.rss_kib[key] = [servers.rss_kib(pid) for pid in servers.worker_pids(server.pid)]


def measure_bcrypt_verify(bench: Bench, password: str) -> None:
    """CPU time of one passlib verify at the configured rounds, in this process."""
    context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=BCRYPT_ROUNDS)
    hashed = context.hash(password)
    samples = []
    for _ in range(bench.plan.verify_samples):
        started = time.process_time()
        context.verify(password, hashed)
        samples.append((time.process_time() - started) * 1000)
    bench.bcrypt_verify_ms = statistics.median(samples)


# --- phases ----------------------------------------------------------------------------------


def production_phase(bench: Bench, superuser: Account, regular: Account) -> None:
    """The production command: throughput, latency, CPU, login and the login flood."""
    plan = bench.plan
    app, bare = start_pair(bench, "gunicorn")
    print(f"production shape: {app.label()} (app) and {bare.label()} (bare)", flush=True)
    regular_token = log_in(app.port, regular)
    me = bearer(regular_token)
    admin = bearer(log_in(app.port, superuser))
    auth_header = dict(me.headers)
    expect_ok(app.port, ME_PATH, auth_header)
    api_key = issue_api_key(app.port, regular_token)
    expect_ok(app.port, LIST_PATH, dict(admin.headers))
    expect_ok(bare.port, "/select1")
    deep_cursor_path, deep_offset_path = last_page_paths(app.port, admin, bench.users)

    def load(server: servers.Server, path: str, request: Request = Request()) -> Load:
        return Load(server.port, path, CONNECTIONS, plan.seconds, request)

    steps: list[tuple[str, str, servers.Server, Load]] = [
        ("health", "GET /health", app, load(app, "/health")),
        ("ping", "GET /ping", bare, load(bare, "/ping")),
        ("me", "GET /api/v1/users/me", app, load(app, ME_PATH, me)),
        *(
            [
                (
                    "me_api_key",
                    "GET /api/v1/users/me, API key",
                    app,
                    load(app, ME_PATH, bearer(api_key)),
                )
            ]
            if api_key
            else []
        ),
        ("select1", "GET /select1", bare, load(bare, "/select1")),
        ("select1_direct", "GET /select1-direct", bare, load(bare, "/select1-direct")),
        ("list", "GET /api/v1/users?limit=100", app, load(app, LIST_PATH, admin)),
        (
            "list_uncached",
            "GET users?limit=100, cache missed",
            app,
            load(app, LIST_PATH, replace(admin, unique_limit=True)),
        ),
        *(
            [
                (
                    "list_last_cursor",
                    "GET users, last page by cursor",
                    app,
                    load(app, deep_cursor_path, admin),
                )
            ]
            if deep_cursor_path
            else []
        ),
        (
            "list_last_offset",
            "GET users, last page by offset",
            app,
            load(app, deep_offset_path, admin),
        ),
    ]
    for _, _, _, step_load in steps:
        loadgen.run(replace(step_load, seconds=plan.warmup_seconds), bench.work_dir)

    login = Load(app.port, LOGIN_PATH, LOGIN_CONNECTIONS, plan.seconds, bench.login_request, 30)
    probe = Load(app.port, "/health", PROBE_CONNECTIONS, plan.seconds)
    flood = Load(app.port, LOGIN_PATH, FLOOD_CONNECTIONS, plan.seconds + 2, bench.login_request, 30)
    for round_number in range(plan.rounds):
        print(f"round {round_number + 1}/{plan.rounds}", flush=True)
        # Alternating the order spreads any drift in machine load over app and ceiling alike.
        ordered = steps if round_number % 2 == 0 else steps[::-1]
        for key, endpoint, server, step_load in ordered:
            bench.measure(key, endpoint, server, step_load)
        bench.measure("login", "POST /api/v1/auth/login", app, login)
        bench.measure("health_idle_probe", "GET /health (idle probe)", app, probe)
        flooding = loadgen.start(flood, bench.work_dir)
        time.sleep(1.0)  # let the bcrypt queue fill before probing
        bench.measure("health_under_flood", "GET /health (login flood)", app, probe, with_cpu=False)
        flood_result = loadgen.finish(flooding)
        entry = bench.measurements.setdefault(
            "login_flood",
            Measurement("login_flood", "POST login (flood)", "app", app.label(), FLOOD_CONNECTIONS),
        )
        entry.runs.append(flood_result)
    bench.cache_counts = scrape_cache_counts(app.port)
    record_rss(bench, "production_app", app)
    record_rss(bench, "production_bare", bare)
    servers.stop(app)
    servers.stop(bare)


def single_worker_phase(bench: Bench, superuser: Account, regular: Account) -> None:
    """One uvicorn worker: the same endpoints at one worker's share, then 256 connections."""
    plan = bench.plan
    app, bare = start_pair(bench, "uvicorn")
    print(f"single worker: {app.label()}", flush=True)
    me = bearer(log_in(app.port, regular))
    admin = bearer(log_in(app.port, superuser))

    def load(server: servers.Server, path: str, request: Request, connections: int) -> Load:
        # wrk counts a request slower than this as timed out: at 256 connections, the number
        # of requests that waited over 3 s.
        return Load(
            server.port, path, connections, plan.seconds, request, timeout_seconds=SLOW_SECONDS
        )

    steps = [
        ("single_health", "GET /health", app, "/health", Request()),
        ("single_ping", "GET /ping", bare, "/ping", Request()),
        ("single_me", "GET /api/v1/users/me", app, ME_PATH, me),
        # The stricter ceiling before the tutorial one: at 256 connections the tutorial
        # pattern deadlocks its threads against its pool, and the bare app never recovers.
        ("single_select1_direct", "GET /select1-direct", bare, "/select1-direct", Request()),
        ("single_select1", "GET /select1", bare, "/select1", Request()),
        ("single_list", "GET /api/v1/users?limit=100", app, LIST_PATH, admin),
        (
            "single_list_uncached",
            "GET users?limit=100, cache missed",
            app,
            LIST_PATH,
            replace(admin, unique_limit=True),
        ),
    ]
    for _, _, server, path, request in steps:
        warm_up = Load(server.port, path, SINGLE_CONNECTIONS, plan.warmup_seconds, request)
        loadgen.run(warm_up, bench.work_dir)
    for round_number in range(plan.rounds):
        print(f"round {round_number + 1}/{plan.rounds}", flush=True)
        for key, endpoint, server, path, request in steps[:: 1 if round_number % 2 == 0 else -1]:
            bench.measure(key, endpoint, server, load(server, path, request, SINGLE_CONNECTIONS))
    print(f"{HIGH_CONNECTIONS} connections", flush=True)
    for key, endpoint, server, path, request in steps[2:]:
        high_key = f"{key}_c{HIGH_CONNECTIONS}"
        bench.measure(high_key, endpoint, server, load(server, path, request, HIGH_CONNECTIONS))
        # A server that stalled under the burst does not answer one more request either.
        try:
            status = servers.http_status(server.port, path, dict(request.headers))
        except OSError:
            status = 0
        bench.health_after_high_load[high_key] = status
    record_rss(bench, "single_app", app)
    record_rss(bench, "single_bare", bare)
    servers.stop(app)
    servers.stop(bare)


def cold_start_phase(bench: Bench) -> None:
    """Process start to the first 200, with the production command."""
    for _ in range(bench.plan.cold_starts):
        for app, path in (("app", "/health"), ("bare", "/ping")):
            server = servers.start(app, "gunicorn", free_port(), bench.env, bench.work_dir)
            try:
                seconds = servers.wait_until_ready(server, path)
            finally:
                servers.stop(server)
            bench.cold_start_s.setdefault(app, []).append(seconds)
            print(f"  cold start {app:<5} {seconds * 1000:7.0f} ms", flush=True)


# --- main ------------------------------------------------------------------------------------


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(plan: Plan, quick: bool, users: int) -> int:
    database = dataset.database_for_this_run()
    password = secrets.token_urlsafe(12)
    superuser = Account("admin@bench.example.com", password)
    regular = Account("user@bench.example.com", password)
    work_dir = Path(tempfile.mkdtemp(prefix="bench_"))
    cleanup: list[Callable[[], None]] = [servers.stop_all, loadgen.kill_all]
    started = time.monotonic()
    try:
        print(f"database {database.name}: creating, migrating", flush=True)
        dataset.create(database)
        cleanup.append(lambda: dataset.drop(database))
        dataset.migrate(database)
        dataset.seed_users(
            database,
            total=users,
            bcrypt_rounds=BCRYPT_ROUNDS,
            superuser=superuser,
            regular=regular,
        )
        env = servers.production_env(database.sqlalchemy_url, BCRYPT_ROUNDS)
        servers.compile_bytecode()
        login_body = urlencode({"username": regular.email, "password": regular.password})
        login_request = Request(
            method="POST",
            body=login_body,
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        )
        backends = dataset.BackendCpu(database)
        cleanup.append(backends.dispose)
        bench = Bench(
            plan=plan,
            users=users,
            work_dir=work_dir,
            env=env,
            login_request=login_request,
            backends=backends,
        )
        measure_bcrypt_verify(bench, password)
        production_phase(bench, superuser, regular)
        single_worker_phase(bench, superuser, regular)
        print("cold starts", flush=True)
        cold_start_phase(bench)
        # --- metrics on vs off (bench/metrics_cost.py) ---
        metrics_cost_results = metrics_cost.compare(
            rounds=plan.rounds,
            seconds=plan.seconds,
            warmup_seconds=plan.warmup_seconds,
            env=env,
            work_dir=work_dir,
            port=free_port,
            log_in=lambda port: log_in(port, regular),
        )
        observations = Observations(
            measurements=bench.measurements,
            rss_kib=bench.rss_kib,
            cold_start_s=bench.cold_start_s,
            health_after_high_load=bench.health_after_high_load,
            bcrypt_verify_ms=bench.bcrypt_verify_ms,
            cache_counts=bench.cache_counts,
            plan=asdict(plan),
            users=users,
        )
        results = report.build(observations, quick=quick, elapsed_s=time.monotonic() - started)
        results["metrics_cost"] = metrics_cost_results
        report.print_report(results)
        metrics_cost.print_summary(metrics_cost_results)
        path = report.write(results)
        print(f"results written to {path.relative_to(dataset.ROOT)}")
        return 0
    finally:
        for step in reversed(cleanup):
            step()
        for leftover in work_dir.iterdir():
            leftover.unlink()
        work_dir.rmdir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 2 s runs")
    parser.add_argument(
        "--users", type=int, default=USER_COUNT, help=f"accounts to seed ({USER_COUNT:,})"
    )
    args = parser.parse_args()
    if args.users < 2 * PAGE_SIZE:
        parser.error(f"--users must be at least {2 * PAGE_SIZE}")
    if loadgen.wrk_path() is None:
        print("wrk not found: install it with 'apt-get install -y wrk'", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run(QUICK if args.quick else FULL, args.quick, args.users)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
