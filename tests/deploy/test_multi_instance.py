"""What compose runs, outside Docker: two instances (gunicorn, 2 workers each) on different
ports sharing one PostgreSQL database and one Redis. Whatever one instance says about a token
or a rate limit, the other must agree: the state lives in the database and in Redis."""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support import (
    free_port,
    fresh_postgres_database,
    migrate,
    postgres_test_url,
    wait_until_healthy,
)

ROOT = Path(__file__).resolve().parents[2]
INSTANCES = 2
LOGIN_LIMIT = 6


@pytest.fixture(scope="module")
def shared_database() -> Iterator[str]:
    if not postgres_test_url() or not os.environ.get("TEST_REDIS_URL"):
        pytest.skip("needs PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL)")
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def instances(
    shared_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    home = tmp_path_factory.mktemp("home")
    env = {
        **os.environ,
        "HOME": str(home),
        "DATABASE_URL": shared_database,
        "REDIS_URL": os.environ["TEST_REDIS_URL"],
        "ENVIRONMENT": "production",
        "SECRET_KEY": "multi-instance-secret-key-0123456789abcdefghij",
        "BCRYPT_ROUNDS": "4",
        "LOGIN_RATE_LIMIT": f"{LOGIN_LIMIT}/minute",
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    migrate(shared_database)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(INSTANCES):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [gunicorn, "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "main:app"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_until_healthy(url, process, path="/health/ready")
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


def client_ip() -> dict[str, str]:
    """A client address of the test's own, passed the way the load balancer passes it (the
    instances trust X-Forwarded-For from 127.0.0.1), so per-IP counts of one test do not
    spill into another."""
    return {"X-Forwarded-For": documentation_address()}


def documentation_address() -> str:
    """A fresh IPv6 address from the documentation range, unique to this call."""
    group = uuid.uuid4().hex
    return f"2001:db8:{group[:4]}:{group[4:8]}::{group[8:12]}"


def register_and_login(
    url: str, email: str, password: str = "shared-password", headers: dict[str, str] | None = None
) -> dict[str, str]:
    headers = headers or client_ip()
    created = httpx2.post(
        f"{url}/api/v1/auth/register",
        json={"name": "Shared", "email": email, "password": password},
    )
    assert created.status_code == 201, created.text
    response = httpx2.post(
        f"{url}/api/v1/auth/login",
        data={"username": email, "password": password},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def test_a_token_from_one_instance_works_on_the_other(instances: list[str]) -> None:
    first, second = instances
    tokens = register_and_login(first, f"a-{uuid.uuid4().hex[:8]}@example.com")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    # Several calls, so both workers of the second instance are likely to answer one.
    for _ in range(4):
        assert httpx2.get(f"{second}/api/v1/users/me", headers=headers).status_code == 200


def test_refresh_on_one_and_logout_on_the_other_agree(instances: list[str]) -> None:
    first, second = instances
    tokens = register_and_login(first, f"b-{uuid.uuid4().hex[:8]}@example.com")
    rotated = httpx2.post(
        f"{first}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert rotated.status_code == 200
    new_refresh = rotated.json()["refresh_token"]
    # The spent token is refused on the other instance too (and that replay burns the family).
    replay = httpx2.post(
        f"{second}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert replay.status_code == 401
    assert (
        httpx2.post(f"{first}/api/v1/auth/refresh", json={"refresh_token": new_refresh}).status_code
        == 401
    )


def test_logout_on_one_instance_ends_the_session_on_the_other(instances: list[str]) -> None:
    first, second = instances
    tokens = register_and_login(second, f"c-{uuid.uuid4().hex[:8]}@example.com")
    logout = httpx2.post(
        f"{second}/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert logout.status_code == 204
    refused = httpx2.post(
        f"{first}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refused.status_code == 401


def test_the_login_limit_counts_once_across_instances_and_workers(instances: list[str]) -> None:
    email = f"d-{uuid.uuid4().hex[:8]}@example.com"
    headers = {"X-Forwarded-For": documentation_address()}
    register_and_login(instances[0], email, headers=headers)  # one attempt counted
    statuses = []
    for attempt in range(LOGIN_LIMIT + 2):
        url = instances[attempt % INSTANCES]
        response = httpx2.post(
            f"{url}/api/v1/auth/login",
            data={"username": email, "password": "wrong-password"},
            headers=headers,
        )
        statuses.append(response.status_code)
    # LOGIN_LIMIT attempts in all, whichever instance and worker took them; then 429.
    assert statuses[: LOGIN_LIMIT - 1] == [401] * (LOGIN_LIMIT - 1)
    assert statuses[LOGIN_LIMIT - 1 :] == [429] * 3
