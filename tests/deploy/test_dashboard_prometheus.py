"""The shipped Grafana dashboard, evaluated by a real Prometheus on what the app really exports.

Debian's Prometheus scrapes, under the job names of deploy/prometheus/prometheus.yml (its
relabelling and metrics paths kept; only service discovery replaced by this test's targets):

- `web`: gunicorn -c gunicorn.conf.py, two workers, PostgreSQL and Redis;
- `worker`: python manage.py worker, which runs the jobs and serves their figures on
  JOBS_METRICS_PORT;
- `prometheus`: itself.

The mail server is down, so every mail fails and is retried until the job gives up. After
registrations, logins, wrong passwords up to the login limit, cached reads and recovery mails,
every query of every panel of deploy/grafana/dashboards/fastapi-accounts.json must return
data, the 5xx ratio must read 0 (not "No data"), and the mails panel must count exactly the
failures the worker counted.

Prometheus is /usr/bin/prometheus (`apt-get install prometheus`): without it the tests are
skipped, except in CI, where a missing Prometheus must fail rather than pass unseen.
"""

import copy
import json
import math
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

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

PROMETHEUS = Path("/usr/bin/prometheus")
SHIPPED_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "fastapi-accounts.json"

SCRAPE_INTERVAL_SECONDS = 1
# Grafana's $__rate_interval is at least four scrape intervals.
RATE_INTERVAL_SECONDS = 4 * SCRAPE_INTERVAL_SECONDS
WAIT_SECONDS = 30.0
STOP_SECONDS = 15.0

PASSWORD = "correct-horse-battery"
ACCOUNTS = 4
LOGIN_LIMIT = 5  # per account and per client address, a minute
JOB_ATTEMPTS = 3
# Each account gets a verification mail (sign-up) and a reset mail (recovery), and each mail
# is tried JOB_ATTEMPTS times against the closed mail port.
MAILS = 2 * ACCOUNTS
SEND_MAIL_JOB = "features.recovery.jobs.send_account_link"
ISSUE_RESET_JOB = "features.recovery.jobs.issue_password_reset"
ISSUE_VERIFICATION_JOB = "features.recovery.jobs.issue_verification"


# --- the dashboard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    panel: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.panel} {self.ref_id}"


def load_dashboard() -> Any:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets() -> list[Target]:
    return [
        Target(panel["title"], target["refId"], target["expr"])
        for panel in load_dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def target(panel: str, ref_id: str = "A") -> Target:
    (found,) = [t for t in dashboard_targets() if (t.panel, t.ref_id) == (panel, ref_id)]
    return found


def template_values() -> dict[str, str]:
    """What Grafana puts in for each template variable: here its "All" value, as the
    dashboard's default selection is."""
    values = {}
    for variable in load_dashboard()["templating"]["list"]:
        # This test knows only variables with an All value.
        assert variable["includeAll"], variable["name"]
        assert variable.get("allValue"), variable["name"]
        values[variable["name"]] = variable["allValue"]
    return values


def as_promql(expr: str, *, rate_interval_seconds: int, range_seconds: int) -> str:
    """The query Grafana sends: its variables replaced by what Grafana would put there."""
    replacements = {
        "$__rate_interval": f"{rate_interval_seconds}s",
        "$__interval": f"{SCRAPE_INTERVAL_SECONDS}s",
        "$__range": f"{range_seconds}s",
        **{f"${name}": value for name, value in template_values().items()},
    }
    # Longest first: `$__rate_interval` before `$__range`, `$instance` before `$in`.
    for variable in sorted(replacements, key=len, reverse=True):
        expr = expr.replace(variable, replacements[variable])
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


# --- Prometheus --------------------------------------------------------------------------------


def require_prometheus() -> None:
    if PROMETHEUS.is_file():
        return
    reason = f"{PROMETHEUS} not found: `apt-get install prometheus` (Debian's package)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def scraping(shipped: dict[str, Any], targets: dict[str, str]) -> dict[str, Any]:
    """The shipped configuration with each job's service discovery replaced by one static
    target, scraping every second; job names, metrics paths and relabelling stay as shipped."""
    config: dict[str, Any] = copy.deepcopy(shipped)
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
        "scrape_timeout": f"{SCRAPE_INTERVAL_SECONDS}s",
        "evaluation_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
    }
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets), f"the shipped config scrapes {jobs}, this test runs {targets}"
    for job in config["scrape_configs"]:
        for key in [key for key in job if key.endswith("_sd_configs")]:
            del job[key]
        for key in ("scrape_interval", "scrape_timeout"):
            job.pop(key, None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@dataclass
class Prometheus:
    base_url: str
    log_path: Path

    def _get(self, path: str, **params: str) -> Any:
        response = httpx2.get(f"{self.base_url}{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{params}: {body.get('error')}\n{self.log()}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant vector: [{"metric": {...}, "value": [time, "1"]}, ...]."""
        params = {"query": expr} if at is None else {"query": expr, "time": repr(at)}
        data = self._get("/api/v1/query", **params)
        assert data["resultType"] == "vector", expr
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """A range query as a Grafana panel sends: [{"metric": {...}, "values": [...]}, ...]."""
        data = self._get(
            "/api/v1/query_range",
            query=expr,
            start=repr(start),
            end=repr(end),
            step=f"{SCRAPE_INTERVAL_SECONDS}s",
        )
        assert data["resultType"] == "matrix", expr
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, selector: str, start: float, end: float) -> list[str]:
        values: list[str] = self._get(
            f"/api/v1/label/{label}/values",
            **{"match[]": selector, "start": repr(start), "end": repr(end)},
        )
        return values

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def scraped_since(prometheus: Prometheus, moment: float) -> bool:
    """Every target has been scraped after `moment` (seconds since the epoch)."""
    last = [value_of(sample) for sample in prometheus.query("timestamp(up)")]
    return bool(last) and min(last) > moment


def value_of(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


def finite_values(series: dict[str, Any]) -> list[float]:
    return [v for _, text in series["values"] if math.isfinite(v := float(text))]


# --- the processes -------------------------------------------------------------------------


@dataclass
class Process:
    popen: "subprocess.Popen[bytes]"
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@contextmanager
def running(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[Process]:
    """A process in a session of its own, stopped (SIGTERM, then SIGKILL) on exit."""
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Process(popen, log_path)
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()


def eventually(condition: Callable[[], bool], what: str, *logs: Process) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            details = "\n".join(f"--- {p.log_path.name}\n{p.log()}" for p in logs)
            raise AssertionError(f"not within {WAIT_SECONDS} s: {what}\n{details}")
        time.sleep(0.2)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics_url: str) -> Samples:
    text = httpx2.get(metrics_url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counted(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- what the panels should show -------------------------------------------------------------


def drive_traffic(web: str, admin_email: str, wait_for_a_scrape: Callable[[], None]) -> None:
    """Sign-ups (each mails a verification link), logins, reads of the signed-in account (the
    account cache), an admin's cached user list and a 404; a scrape later, the same people
    again, recovery mails, and a guesser stopped by the login limit.

    Two rounds, because a series that appears with its first count shows that count to no
    rate(): Prometheus sees only changes between scrapes. Each client has an address of its
    own (the server trusts X-Forwarded-For from 127.0.0.1, as from its load balancer), so the
    rate limits in the shared Redis count this run's requests only.
    """
    network = f"10.{random.randrange(256)}.{random.randrange(256)}"

    def call(method: str, path: str, *, client: int, token: str = "", **kwargs: Any) -> int:
        headers = {"X-Forwarded-For": f"{network}.{client}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # A new connection each time, so both workers serve.
        response = httpx2.request(method, f"{web}{path}", headers=headers, timeout=15, **kwargs)
        return response.status_code

    def login(email: str, password: str, *, client: int) -> httpx2.Response:
        return httpx2.post(
            f"{web}/api/v1/auth/login",
            data={"username": email, "password": password},
            headers={"X-Forwarded-For": f"{network}.{client}"},
            timeout=15,
        )

    def signed_in(email: str, *, client: int) -> str:
        response = login(email, PASSWORD, client=client)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def read_twice(path: str, *, client: int, token: str) -> None:
        for _ in range(2):  # a miss, then a hit
            assert call("GET", path, client=client, token=token) == 200

    run = uuid.uuid4().hex[:8]
    emails = [f"observed-{run}-{index}@example.com" for index in range(ACCOUNTS)]
    admin_client = len(emails) + 1
    tokens = []
    for client, email in enumerate(emails, start=1):
        account = {"name": "Observed", "email": email, "password": PASSWORD}
        assert call("POST", "/api/v1/auth/register", client=client, json=account) == 201
        tokens.append(signed_in(email, client=client))
        read_twice("/api/v1/users/me", client=client, token=tokens[-1])
    admin_token = signed_in(admin_email, client=admin_client)
    read_twice("/api/v1/users", client=admin_client, token=admin_token)
    missing = f"/api/v1/users/{uuid.uuid4()}"
    assert call("GET", missing, client=admin_client, token=admin_token) == 404
    # Someone mistypes a password: the 401s of the second round add to a series seen already.
    assert login(emails[-1], "mistyped-password", client=len(emails)).status_code == 401

    wait_for_a_scrape()
    for client, (email, token) in enumerate(zip(emails, tokens, strict=True), start=1):
        read_twice("/api/v1/users/me", client=client, token=token)
        recovery = {"email": email}
        assert call("POST", "/api/v1/auth/password-recovery", client=client, json=recovery) == 202
    read_twice("/api/v1/users", client=admin_client, token=admin_token)
    guesser = admin_client + 1
    # One address at one account: the guess after the limit is one too many.
    guesses = [login(emails[0], "wrong-password", client=guesser) for _ in range(LOGIN_LIMIT + 1)]
    assert [guess.status_code for guess in guesses] == [401] * LOGIN_LIMIT + [429]


@dataclass
class Deployment:
    prometheus: Prometheus
    web_instance: str
    started_at: float  # before Prometheus's first scrape (seconds since the epoch)
    traffic_started_at: float
    worker_mails_failed: float  # as the worker's own /metrics counts them

    def panel(self, query: Target) -> list[dict[str, Any]]:
        """The query as the panel runs it, over everything Prometheus has seen."""
        end = time.time()
        return self.prometheus.query_range(self._promql(query, end), self.started_at, end)

    def panel_at(self, query: Target, at: float) -> list[dict[str, Any]]:
        """The panel's value at one moment."""
        return self.prometheus.query(self._promql(query, at), at=at)

    def _promql(self, query: Target, end: float) -> str:
        return as_promql(
            query.expr,
            rate_interval_seconds=RATE_INTERVAL_SECONDS,
            range_seconds=math.ceil(end - self.started_at),
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_prometheus()
    redis_url = os.environ.get("TEST_REDIS_URL", "")
    if not redis_url:
        pytest.skip("needs Redis (TEST_REDIS_URL): the account cache only counts there")
    directory = tmp_path_factory.mktemp("observed")
    (directory / "home").mkdir()
    web_port, worker_port, prometheus_port = free_port(), free_port(), free_port()
    closed_smtp_port = free_port()  # nothing listens there: every mail fails
    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    with fresh_postgres_database() as database_url, ExitStack() as stack:
        env = server_env(
            database_url,
            HOME=str(directory / "home"),
            PORT=str(web_port),
            WEB_CONCURRENCY="2",
            PROMETHEUS_MULTIPROC_DIR=str(directory / "metrics"),
            # The cache's key space in Redis is named after the secret: this run's own.
            SECRET_KEY=secrets.token_urlsafe(32),
            REDIS_URL=redis_url,
            LOGIN_RATE_LIMIT=f"{LOGIN_LIMIT}/minute",
            RECOVERY_RATE_LIMIT="100/minute",
            FIRST_SUPERUSER_EMAIL=admin_email,
            FIRST_SUPERUSER_PASSWORD=PASSWORD,
            JOBS_MODE="queue",
            JOBS_METRICS_PORT=str(worker_port),
            JOBS_MAX_ATTEMPTS=str(JOB_ATTEMPTS),
            JOBS_RETRY_BASE_SECONDS="0.1",
            JOBS_RETRY_MAX_SECONDS="0.3",
            JOBS_POLL_SECONDS="0.2",
            JOBS_SHUTDOWN_TIMEOUT="2",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(closed_smtp_port),
            SMTP_STARTTLS="false",
        )
        migrate(database_url)
        subprocess.run(
            [sys.executable, "manage.py", "superuser"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        config_path = directory / "prometheus.yml"
        web_instance = f"127.0.0.1:{web_port}"
        targets = {
            "web": web_instance,
            "worker": f"127.0.0.1:{worker_port}",
            "prometheus": f"127.0.0.1:{prometheus_port}",
        }
        config_path.write_text(
            yaml.safe_dump(scraping(yaml.safe_load(SHIPPED_CONFIG.read_text()), targets))
        )

        web = stack.enter_context(
            running(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "main:app"],
                env,
                directory / "gunicorn.log",
            )
        )
        worker = stack.enter_context(
            running([sys.executable, "manage.py", "worker"], env, directory / "worker.log")
        )
        started_at = time.time()
        server = stack.enter_context(
            running(
                [
                    str(PROMETHEUS),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={directory / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
                dict(os.environ),
                directory / "prometheus.log",
            )
        )
        prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}", server.log_path)
        web_url = f"http://127.0.0.1:{web_port}"
        worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
        wait_until_healthy(web_url, web.popen, web.log)
        wait_until_healthy(f"http://127.0.0.1:{worker_port}", worker.popen, worker.log, "/metrics")
        wait_until_healthy(prometheus.base_url, server.popen, server.log, "/-/ready")

        def every_target_up() -> bool:
            up = {s["metric"]["job"]: value_of(s) for s in prometheus.query("up")}
            return up == dict.fromkeys(targets, 1.0)

        def wait_for_a_scrape() -> None:
            moment = time.time()
            eventually(
                lambda: scraped_since(prometheus, moment), "a scrape of every target", server
            )

        def worker_gave_up_on_every_mail() -> bool:
            failed = {"job_name": SEND_MAIL_JOB, "outcome": "failed"}
            return counted(scrape(worker_metrics), "app_jobs_processed_total", **failed) == MAILS

        def prometheus_has_the_workers_last_count() -> bool:
            found = prometheus.query('app_mails_total{job="worker", outcome="failed"}')
            return [value_of(sample) for sample in found] == [worker_mails_failed]

        eventually(every_target_up, "Prometheus scrapes every target", web, worker, server)
        # Two samples of every series before the first request: the counters the traffic
        # moves are seen at 0 first, so every count shows in rate() and increase().
        wait_for_a_scrape()
        wait_for_a_scrape()
        traffic_started_at = time.time()
        drive_traffic(web_url, admin_email, wait_for_a_scrape)
        eventually(worker_gave_up_on_every_mail, "every mail job gave up", worker)
        worker_mails_failed = counted(scrape(worker_metrics), "app_mails_total", outcome="failed")
        eventually(prometheus_has_the_workers_last_count, "Prometheus caught up", server)
        # Two more scrapes of every target, so each rate() over the traffic has two samples.
        wait_for_a_scrape()
        wait_for_a_scrape()
        yield Deployment(
            prometheus, web_instance, started_at, traffic_started_at, worker_mails_failed
        )


# --- the tests -------------------------------------------------------------------------------

TARGETS = dashboard_targets()


@pytest.mark.parametrize("query", TARGETS, ids=[query.name for query in TARGETS])
def test_every_panel_query_returns_data(deployment: Deployment, query: Target) -> None:
    series = deployment.panel(query)
    assert any(finite_values(one) for one in series), f"no data: {query.expr}"


def test_the_replica_variable_lists_the_web_replica(deployment: Deployment) -> None:
    (variable,) = load_dashboard()["templating"]["list"]
    found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
    assert found, variable["query"]
    selector, label = found.groups()
    values = deployment.prometheus.label_values(label, selector, deployment.started_at, time.time())
    assert values == [deployment.web_instance]


def test_the_error_ratio_reads_0_when_nothing_failed(deployment: Deployment) -> None:
    (server_errors,) = deployment.panel(target("Error ratio", "A"))
    values = finite_values(server_errors)
    assert values
    assert set(values) == {0.0}
    (client_errors,) = deployment.panel(target("Error ratio", "B"))
    assert max(finite_values(client_errors)) > 0  # wrong passwords


def test_the_job_panels_list_every_job_at_0_before_it_first_runs(deployment: Deployment) -> None:
    """A series that appears with its first count shows that count to no rate(): the worker
    exports each job's series before the job runs."""
    runs = target("Jobs run by name and outcome")
    before = deployment.panel_at(runs, deployment.traffic_started_at)
    shown = {(one["metric"]["job_name"], one["metric"]["outcome"]): value_of(one) for one in before}
    for job_name in (SEND_MAIL_JOB, ISSUE_RESET_JOB, ISSUE_VERIFICATION_JOB):
        for outcome in ("succeeded", "retried", "failed"):
            assert shown.get((job_name, outcome)) == 0.0, (job_name, outcome, shown)


def test_the_mails_panel_counts_every_failure_the_worker_counted(deployment: Deployment) -> None:
    assert deployment.worker_mails_failed == MAILS * JOB_ATTEMPTS
    prometheus = deployment.prometheus
    (latest,) = prometheus.query('timestamp(app_mails_total{job="worker", outcome="failed"})')
    at = value_of(latest)
    # The panel's query with one window over the whole run, evaluated at the worker's last
    # scrape: the window starts before the counter's first sample (0) and ends on its last,
    # so increase() adds up exactly, without extrapolating.
    window = math.ceil(at - deployment.started_at) + 2 * SCRAPE_INTERVAL_SECONDS
    expr = as_promql(
        target("Mails by outcome").expr, rate_interval_seconds=window, range_seconds=window
    )
    by_outcome = {s["metric"]["outcome"]: value_of(s) for s in prometheus.query(expr, at=at)}
    assert by_outcome == {"failed": deployment.worker_mails_failed, "sent": 0.0, "skipped": 0.0}


SHOWN = [
    ("Logins by outcome", {"outcome": "success"}),
    ("Logins by outcome", {"outcome": "failure"}),
    ("Logins by outcome", {"outcome": "rate_limited"}),
    ("Rate-limit rejections by limit", {"limit": "login"}),
    ("Cache hit ratio", {"cache": "account"}),
    ("Cache hit ratio", {"cache": "response"}),
    ("Cache look-ups by result", {"cache": "account", "result": "hit"}),
    ("Cache look-ups by result", {"cache": "response", "result": "hit"}),
    ("Mails by outcome", {"outcome": "failed"}),
    ("Jobs run by name and outcome", {"job_name": SEND_MAIL_JOB, "outcome": "retried"}),
    ("Jobs run by name and outcome", {"job_name": SEND_MAIL_JOB, "outcome": "failed"}),
    (
        "Jobs run by name and outcome",
        {"job_name": ISSUE_RESET_JOB, "outcome": "succeeded"},
    ),
    ("Job duration p95 by name", {"job_name": ISSUE_VERIFICATION_JOB}),
]


@pytest.mark.parametrize(
    ("panel", "labels"),
    SHOWN,
    ids=[f"{panel} {' '.join(labels.values())}" for panel, labels in SHOWN],
)
def test_panels_show_what_the_traffic_did(
    deployment: Deployment, panel: str, labels: dict[str, str]
) -> None:
    series = [
        one for one in deployment.panel(target(panel)) if labels.items() <= one["metric"].items()
    ]
    assert series, f"no series {labels}"
    assert max(max(finite_values(one), default=0.0) for one in series) > 0


def test_memory_and_cpu_are_shown_for_both_workers(deployment: Deployment) -> None:
    for panel in ("Resident memory per worker", "CPU per worker"):
        pids = {
            one["metric"]["pid"] for one in deployment.panel(target(panel)) if finite_values(one)
        }
        assert len(pids) == 2, (panel, pids)
