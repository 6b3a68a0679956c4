"""Schemathesis against the app as production runs it: gunicorn with the shipped
gunicorn.conf.py and two workers, a freshly migrated PostgreSQL database, Redis for the cache
and the limits, jobs through the queue with `manage.py worker` taking them, the production
settings and middleware. Every operation of the live /openapi.json, valid and invalid input,
and the stateful phase (sequences that follow the links between operations), once as a plain
user and once as an admin, both at the same time; no answer may be a 500 or differ from what
the document promises.

The schemathesis CLI runs it, with the hooks in tests/hardening/fuzz_accounts.py: every
request speaks for an account made for the run, so whatever the fuzzer does to it (delete it,
demote it, change its password) nobody else's account is touched.
"""

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_REDIS_URL
from tests.support import (
    free_port,
    fresh_postgres_database,
    migrate,
    requires_postgres,
    server_env,
    stop_process_group,
    wait_until_healthy,
)

pytestmark = requires_postgres

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = secrets.token_urlsafe(12)
# Per operation and phase; the stateful phase runs about as many sequences. Bounded so one
# run takes about a minute on two cores.
MAX_EXAMPLES = 15
RUN_TIMEOUT_SECONDS = 240
CALLERS = ("user", "admin")
# The operations whose every generated request fails for want of a secret no schema can hold
# (a link that was mailed, the caller's current password, the one-time code and state of an
# OpenID Connect sign-in begun at a provider), so they answer 400 to all of them
# and schemathesis takes that for a schema that hides rules ("validation_mismatch"). Every
# other operation's schema must state what the server enforces.
NEEDS_A_SECRET = {
    "POST /api/v1/auth/reset-password",
    "POST /api/v1/auth/verify-email",
    "POST /api/v1/auth/restore-email",
    "POST /api/v1/users/me/password",
    "GET /api/v1/auth/oidc/{provider}/callback",
    "POST /api/v1/auth/oidc/exchange",
}
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


@dataclass(frozen=True)
class ProductionServer:
    base_url: str
    env: dict[str, str]
    log_dir: Path

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


def _start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServer]:
    log_dir = tmp_path_factory.mktemp("production")
    port = free_port()
    with fresh_postgres_database() as database_url:
        migrate(database_url)
        env = server_env(
            database_url,
            ENVIRONMENT="production",
            # A key of the run's own: the cache's key space in the shared Redis is the run's.
            SECRET_KEY=secrets.token_urlsafe(48),
            REDIS_URL=TEST_REDIS_URL,
            JOBS_MODE="queue",
            JOBS_METRICS_PORT="0",
            WEB_CONCURRENCY="2",
            PORT=str(port),
            PROMETHEUS_MULTIPROC_DIR=str(log_dir / "metrics"),
            FIRST_SUPERUSER_EMAIL=ADMIN_EMAIL,
            FIRST_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
            # The fuzzer signs in and asks for mails far more often than a person does.
            LOGIN_RATE_LIMIT="100000/minute",
            RECOVERY_RATE_LIMIT="100000/minute",
        )
        subprocess.run(
            [sys.executable, "manage.py", "superuser"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        gunicorn = _start(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "main:app"],
            env,
            log_dir / "gunicorn.log",
        )
        worker = _start([sys.executable, "manage.py", "worker"], env, log_dir / "worker.log")
        server = ProductionServer(f"http://127.0.0.1:{port}", env, log_dir)
        try:
            wait_until_healthy(server.base_url, gunicorn, server.logs, path="/health/ready")
            yield server
        finally:
            stop_process_group(gunicorn)
            stop_process_group(worker)


def _schemathesis(server: ProductionServer, caller: str, reports: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.hardening.fuzz_accounts",
        # Run from the test's directory (schemathesis keeps files where it runs); the hooks
        # are imported from the project.
        "PYTHONPATH": str(ROOT),
        "FUZZ_BASE_URL": server.base_url,
        "FUZZ_CALLER": caller,
        "FUZZ_ADMIN_EMAIL": ADMIN_EMAIL,
        "FUZZ_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{server.base_url}/openapi.json",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--checks",
        CHECKS,
        # Deterministic (the same cases every run, no example database).
        "--generation-deterministic",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(reports / f"{caller}.json"),
    ]
    with (reports / f"{caller}.txt").open("wb") as out:
        return subprocess.Popen(command, cwd=reports, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_no_server_error_and_every_answer_as_documented_for_users_and_admins(
    production_server: ProductionServer, tmp_path: Path
) -> None:
    # Both callers at once: the two workers serve them concurrently, as they would serve
    # a plain user and an admin in production.
    started = time.monotonic()
    runs = {caller: _schemathesis(production_server, caller, tmp_path) for caller in CALLERS}
    for process in runs.values():
        try:
            process.wait(timeout=RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    elapsed = time.monotonic() - started

    for caller in CALLERS:
        output = (tmp_path / f"{caller}.txt").read_text(errors="replace")
        print(f"\n=== as {caller} ({elapsed:.0f} s for both runs) ===\n{output[-2500:]}")
        assert runs[caller].returncode == 0, f"{output[-20000:]}\n{production_server.logs()}"
        report = json.loads((tmp_path / f"{caller}.json").read_text())
        assert report["failures"] == [], report["failures"]
        assert report["errors"] == [], report["errors"]
        ran = {name for name, phase in report["phases"].items() if phase["status"] == "success"}
        assert ran >= {"coverage", "fuzzing", "stateful"}, report["phases"]
        assert set(report["warnings"]["validation_mismatch"]) <= NEEDS_A_SECRET, report["warnings"]
    assert "Traceback" not in production_server.logs(), production_server.logs()
