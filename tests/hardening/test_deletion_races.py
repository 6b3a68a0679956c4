"""An account deleted while a request (or a job) that read it a moment earlier is still
working on it. The request must answer as it would a moment later (401, 404), never 500,
and a job for it must skip, not fail.

Each test makes the race certain instead of likely: a transaction of its own deletes the
account and holds the deletion open; the request starts, and only once it waits on that
deletion's row lock is the deletion committed. PostgreSQL only: SQLite has no row locks and
lets one transaction write at a time.
"""

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx2
import psycopg2
import pytest
from sqlalchemy.engine import make_url

from core import jobs
from core.data.db import Database
from core.security import digest_token, new_opaque_token
from features import registry
from features.oidc.service import s256_challenge
from tests.conftest import ROOT, make_settings
from tests.support import (
    LiveServer,
    fresh_postgres_database,
    migrate,
    requires_postgres,
    run_server,
    server_env,
)

pytestmark = requires_postgres

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-for-races"
PASSWORD = "a-password-for-races"
LOCK_WAIT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Setup:
    server: LiveServer
    database_url: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with fresh_postgres_database() as database_url:
        migrate(database_url)
        subprocess.run(
            [sys.executable, "manage.py", "superuser"],
            cwd=ROOT,
            env=server_env(
                database_url,
                FIRST_SUPERUSER_EMAIL=ADMIN_EMAIL,
                FIRST_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        with run_server(database_url, tmp_path_factory.mktemp("races")) as server:
            yield Setup(server, database_url)


@pytest.fixture
def client(setup: Setup) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=setup.server.base_url, timeout=30) as client:
        yield client


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    tokens: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


def signed_in(client: httpx2.Client, email: str, password: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def new_account(client: httpx2.Client) -> Account:
    email = f"race-{time.monotonic_ns()}@example.com"
    created = client.post(
        "/api/v1/auth/register", json={"name": "Race", "email": email, "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    return Account(created.json()["id"], email, signed_in(client, email, PASSWORD))


def _libpq(database_url: str) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _waiting_on_a_lock(database_url: str, holder_pid: int) -> bool:
    with psycopg2.connect(_libpq(database_url)) as probe, probe.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND %s = ANY(pg_blocking_pids(pid))",
            (holder_pid,),
        )
        (waiting,) = cursor.fetchone() or (0,)
    probe.close()
    return bool(waiting)


@contextmanager
def deletion_held_open(database_url: str, user_id: str) -> Iterator[Callable[[], None]]:
    """Delete the account in a transaction that stays open; the block waits (the callable it
    gets) until something queues behind the deletion's locks, then the deletion commits."""
    holder = psycopg2.connect(_libpq(database_url))
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (holder_pid,) = cursor.fetchone() or (0,)
            cursor.execute("DELETE FROM users WHERE id = %s", (user_id,))
            assert cursor.rowcount == 1

        def until_blocked() -> None:
            deadline = time.monotonic() + LOCK_WAIT_TIMEOUT_SECONDS
            while not _waiting_on_a_lock(database_url, holder_pid):
                assert time.monotonic() < deadline, "nothing waited for the deletion"
                time.sleep(0.02)

        yield until_blocked
        holder.commit()
    finally:
        holder.close()


def racing_the_deletion(
    setup: Setup, user_id: str, work: Callable[[], httpx2.Response]
) -> httpx2.Response:
    """`work`'s response, where `work` started while the account's deletion was uncommitted
    and was left waiting for it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        with deletion_held_open(setup.database_url, user_id) as until_blocked:
            pending: Future[httpx2.Response] = pool.submit(work)
            until_blocked()
        return pending.result(timeout=30)


def test_a_name_change_by_the_owner_of_an_account_deleted_meanwhile_is_401(
    setup: Setup, client: httpx2.Client
) -> None:
    account = new_account(client)
    response = racing_the_deletion(
        setup,
        account.id,
        lambda: client.patch("/api/v1/users/me", json={"name": "Late"}, headers=account.headers),
    )
    assert response.status_code == 401, (response.text, setup.server.log())


def test_an_admins_change_to_an_account_deleted_meanwhile_is_404(
    setup: Setup, client: httpx2.Client
) -> None:
    admin = {
        "Authorization": f"Bearer {signed_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)['access_token']}"
    }
    account = new_account(client)
    response = racing_the_deletion(
        setup,
        account.id,
        lambda: client.patch(f"/api/v1/users/{account.id}", json={"name": "Late"}, headers=admin),
    )
    assert response.status_code == 404, (response.text, setup.server.log())


def test_deleting_my_account_when_it_was_deleted_meanwhile_is_401(
    setup: Setup, client: httpx2.Client
) -> None:
    account = new_account(client)
    response = racing_the_deletion(
        setup, account.id, lambda: client.delete("/api/v1/users/me", headers=account.headers)
    )
    assert response.status_code == 401, (response.text, setup.server.log())


def test_signing_in_to_an_account_deleted_meanwhile_is_401(
    setup: Setup, client: httpx2.Client
) -> None:
    account = new_account(client)
    response = racing_the_deletion(
        setup,
        account.id,
        lambda: client.post(
            "/api/v1/auth/login", data={"username": account.email, "password": PASSWORD}
        ),
    )
    assert response.status_code == 401, (response.text, setup.server.log())


def test_refreshing_for_an_account_deleted_meanwhile_is_401(
    setup: Setup, client: httpx2.Client
) -> None:
    account = new_account(client)
    response = racing_the_deletion(
        setup,
        account.id,
        lambda: client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.tokens["refresh_token"]}
        ),
    )
    assert response.status_code == 401, (response.text, setup.server.log())


def test_an_api_key_for_an_account_deleted_meanwhile_is_401(
    setup: Setup, client: httpx2.Client
) -> None:
    account = new_account(client)
    response = racing_the_deletion(
        setup,
        account.id,
        lambda: client.post(
            "/api/v1/api-keys", json={"name": "late", "permissions": []}, headers=account.headers
        ),
    )
    assert response.status_code == 401, (response.text, setup.server.log())


def test_a_reset_link_job_for_an_account_deleted_meanwhile_skips(
    setup: Setup, client: httpx2.Client
) -> None:
    account = new_account(client)
    settings = make_settings(setup.database_url)
    database = Database.from_settings(settings)
    registry.import_jobs()
    # As the worker process runs them: from the queue, so what a job enqueues goes there too
    # (importing main for the fixtures left an in-process runner for its SQLite default).
    jobs.use_in_process_runner(None)
    try:
        # Sign-up's own mail first, so the only job left is the one that races.
        jobs.run_due_jobs(settings, database)
        accepted = client.post("/api/v1/auth/password-recovery", json={"email": account.email})
        assert accepted.status_code == 202, accepted.text

        ran: list[int] = []
        with deletion_held_open(setup.database_url, account.id) as until_blocked:
            worker = threading.Thread(
                target=lambda: ran.append(jobs.run_due_jobs(settings, database))
            )
            worker.start()
            until_blocked()
        worker.join(timeout=30)
        assert ran, "the job runner did not finish"

        with database.session() as session:
            left = session.connection().exec_driver_sql(
                "SELECT status::text, attempts FROM procrastinate_jobs"
            )
            # A job that succeeded is deleted at once; one that failed waits for a retry.
            assert left.all() == []
    finally:
        database.dispose()


def test_trading_a_sign_in_code_of_an_account_deleted_meanwhile_is_refused(
    setup: Setup, client: httpx2.Client
) -> None:
    """An OpenID Connect sign-in's one-time code (features/oidc), issued as a callback
    stores it, traded while its account is being deleted."""
    account = new_account(client)
    code, verifier = new_opaque_token(), new_opaque_token()
    with psycopg2.connect(_libpq(setup.database_url)) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO oidc_exchange_codes (id, code_hash, user_id, provider, code_challenge,"
            " created_at, expires_at)"
            " VALUES (%s, %s, %s, 'idp', %s, now(), now() + interval '1 minute')",
            (str(uuid.uuid4()), digest_token(code), account.id, s256_challenge(verifier)),
        )
    connection.close()
    response = racing_the_deletion(
        setup,
        account.id,
        lambda: client.post(
            "/api/v1/auth/oidc/exchange", json={"code": code, "code_verifier": verifier}
        ),
    )
    assert response.status_code == 400, (response.text, setup.server.log())
    assert "Traceback" not in setup.server.log()
