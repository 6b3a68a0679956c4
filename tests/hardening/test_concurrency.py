"""Real concurrency against a real server: uvicorn in a subprocess, its own database, separate
connections per request."""

import functools
import hashlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from tests.hardening.conftest import register_and_login
from tests.support import LiveServer, fresh_database, migrate, postgres_test_url, run_server

REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"
POOL_SIZE = 5
CLIENT_TIMEOUT_SECONDS = 15.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(tmp_path_factory.mktemp("live")) as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with run_server(
        database_url,
        tmp_path_factory.mktemp("logs"),
        DATABASE_POOL_SIZE=str(POOL_SIZE),
        DATABASE_MAX_OVERFLOW="0",
        MAX_BODY_BYTES="65536",
    ) as live:
        yield live


def parallel_client(connections: int) -> httpx2.Client:
    """One thread-safe client with a connection per thread: real parallel connections, without
    building a client (and its TLS context) per request."""
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=0)
    return httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS, limits=limits)


def all_at_once(count: int, call: Callable[[int], T]) -> list[T]:
    """Run `call(0..count-1)` on `count` threads released by one barrier, so they overlap."""
    barrier = threading.Barrier(count)

    def released(index: int) -> T:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(released, range(count)))


def test_parallel_registrations_of_one_email_give_one_account(
    server: LiveServer, database_url: str
) -> None:
    email = "race@example.com"
    spellings = [email.upper(), email, email.title(), "RACE@example.com"]

    with parallel_client(24) as client:

        def register(index: int) -> int:
            response = client.post(
                f"{server.base_url}{REGISTER}",
                json={
                    "name": f"Racer {index}",
                    "email": spellings[index % len(spellings)],
                    "password": "race-password",
                },
            )
            return response.status_code

        statuses = Counter(all_at_once(24, register))
    print(f"\n24 parallel registrations of one email: {dict(statuses)}")
    assert statuses == Counter({201: 1, 409: 23}), server.log()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT count(*) FROM users WHERE lower(email) = :email"), {"email": email}
            ).scalar_one()
    finally:
        engine.dispose()
    assert rows == 1


EMAIL_RACE_ROUNDS = 3


# SQLite lets one transaction write at a time: a request that read before another's commit
# cannot write after it (busy snapshot) and answers 503, never reaching the unique check.
@pytest.mark.skipif(not postgres_test_url(), reason="concurrent writers need PostgreSQL")
def test_two_accounts_racing_for_one_new_address_get_one_200_and_one_409(
    server: LiveServer, database_url: str
) -> None:
    """The change's reactions enqueue jobs (on PostgreSQL into the real queue, in the
    request's transaction) and their queries flush the new address before the commit:
    whichever write meets the other's, the loser is a 409, never a 500."""
    base = server.base_url
    for _ in range(EMAIL_RACE_ROUNDS):
        wanted = f"wanted-{uuid.uuid4().hex[:8]}@example.com"
        with httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            racers = [_account_with_password(client, base) for _ in range(2)]
        with parallel_client(2) as client:
            moving = functools.partial(_move_to, client, base, wanted, racers)
            statuses = sorted(all_at_once(2, moving))
        assert statuses == [200, 409], (statuses, server.log())
        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:
                holders = connection.execute(
                    text("SELECT count(*) FROM users WHERE email = :email"), {"email": wanted}
                ).scalar_one()
        finally:
            engine.dispose()
        assert holders == 1


def _move_to(
    client: httpx2.Client, base: str, wanted: str, racers: list[tuple[str, str]], index: int
) -> int:
    authorization, password = racers[index]
    return client.patch(
        f"{base}{ME}",
        headers={"Authorization": authorization},
        json={"email": wanted, "current_password": password},
    ).status_code


def _account_with_password(client: httpx2.Client, base: str) -> tuple[str, str]:
    """A new account: its Authorization header and its password."""
    email = f"racer-{uuid.uuid4().hex[:8]}@example.com"
    password = "racer-password"
    created = client.post(
        f"{base}{REGISTER}", json={"name": "Racer", "email": email, "password": password}
    )
    assert created.status_code == 201, created.text
    tokens = client.post(
        f"{base}/api/v1/auth/login", data={"username": email, "password": password}
    )
    assert tokens.status_code == 200, tokens.text
    return f"Bearer {tokens.json()['access_token']}", password


@pytest.mark.parametrize("concurrency", [64, 256])
def test_many_concurrent_requests_on_a_small_pool_all_complete(
    server: LiveServer, concurrency: int
) -> None:
    with httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        headers = register_and_login(server.base_url, client)

    with parallel_client(concurrency) as client:

        def read_me(_: int) -> int:
            try:
                return client.get(f"{server.base_url}{ME}", headers=headers).status_code
            except httpx2.TimeoutException:
                return 0  # hung: the assertion below names it

        started = time.monotonic()
        statuses = Counter(all_at_once(concurrency, read_me))
        elapsed = time.monotonic() - started
    print(
        f"\n{concurrency} concurrent GET /users/me, pool {POOL_SIZE}: {dict(statuses)} "
        f"in {elapsed:.2f} s"
    )
    assert set(statuses) <= {200, 503}, server.log()
    assert statuses[200] > 0


def _raw_exchange(server: LiveServer, request: bytes, then_send: bytes = b"") -> bytes:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=CLIENT_TIMEOUT_SECONDS) as sock:
        sock.sendall(request)
        if then_send:
            sock.sendall(then_send)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply


def test_a_declared_oversized_body_is_413_before_it_is_sent(server: LiveServer) -> None:
    headers = (
        f"POST {REGISTER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    ).encode()
    # Only the headers go out; the answer must come without waiting for ten megabytes.
    reply = _raw_exchange(server, headers)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"detail": "Request body too large"}


def test_a_chunked_oversized_body_is_413(server: LiveServer) -> None:
    headers = (
        f"POST {REGISTER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"8000\r\n" + b" " * 0x8000 + b"\r\n"
    reply = _raw_exchange(server, headers, chunk * 3)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def _wait_for_lock_waiters(connection: Connection, count: int, timeout: float = 10.0) -> None:
    """Until `count` other sessions of this database wait on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        if waiting >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} requests reached the lock in {timeout} s")


@pytest.mark.skipif(not postgres_test_url(), reason="row locks need PostgreSQL")
def test_a_refresh_token_that_loses_a_race_burns_its_family(
    server: LiveServer, database_url: str
) -> None:
    """Two refreshes with one token both find it unspent; the one whose spend comes second
    must treat it as a replay and revoke the family, the winner's new token included."""
    with httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        email = f"race-{uuid.uuid4().hex[:8]}@example.com"
        created = client.post(
            f"{server.base_url}{REGISTER}",
            json={"name": "Racer", "email": email, "password": "race-password"},
        )
        assert created.status_code == 201, created.text
        tokens = client.post(
            f"{server.base_url}/api/v1/auth/login",
            data={"username": email, "password": "race-password"},
        ).json()
    refresh_token = tokens["refresh_token"]
    engine = create_engine(database_url)
    try:
        with engine.connect() as lock, parallel_client(2) as client:
            # Hold the token's row: both requests read it as unspent (reads are not blocked),
            # then both wait to spend it.
            lock.execute(
                text("SELECT id FROM refresh_tokens WHERE token_hash = :digest FOR UPDATE"),
                {"digest": hashlib.sha256(refresh_token.encode()).hexdigest()},
            ).one()
            with ThreadPoolExecutor(max_workers=2) as pool:
                racing = [
                    pool.submit(
                        client.post,
                        f"{server.base_url}/api/v1/auth/refresh",
                        json={"refresh_token": refresh_token},
                    )
                    for _ in range(2)
                ]
                _wait_for_lock_waiters(lock, 2)
                lock.rollback()
                responses = [future.result() for future in racing]
    finally:
        engine.dispose()
    assert sorted(response.status_code for response in responses) == [200, 401], server.log()
    (winner,) = [response for response in responses if response.status_code == 200]
    with httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        again = client.post(
            f"{server.base_url}/api/v1/auth/refresh",
            json={"refresh_token": winner.json()["refresh_token"]},
        )
    assert again.status_code == 401


# --- no race to zero admins ------------------------------------------------------------------

ADMIN_RACE_ROUNDS = 5


def _only_admins(
    database_url: str, count: int, client: httpx2.Client, base_url: str
) -> list[dict[str, str]]:
    """Make exactly `count` new accounts the only active superusers; their id and headers."""
    admins = []
    for _ in range(count):
        email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
        created = client.post(
            f"{base_url}{REGISTER}",
            json={"name": "Admin", "email": email, "password": "admin-password"},
        )
        assert created.status_code == 201, created.text
        admins.append({"id": created.json()["id"], "email": email})
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            admin_role = "(SELECT id FROM roles WHERE name = 'admin')"
            connection.execute(text(f"DELETE FROM user_roles WHERE role_id = {admin_role}"))  # noqa: S608
            for admin in admins:
                connection.execute(
                    text(f"INSERT INTO user_roles (user_id, role_id) SELECT :id, {admin_role}"),
                    {"id": uuid.UUID(admin["id"]).hex if "sqlite" in database_url else admin["id"]},
                )
    finally:
        engine.dispose()
    for admin in admins:
        tokens = client.post(
            f"{base_url}/api/v1/auth/login",
            data={"username": admin["email"], "password": "admin-password"},
        )
        assert tokens.status_code == 200, tokens.text
        admin["authorization"] = f"Bearer {tokens.json()['access_token']}"
    return admins


def _active_admins(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            count: int = connection.execute(
                text(
                    "SELECT count(*) FROM users JOIN user_roles ON user_roles.user_id = users.id"
                    " JOIN roles ON roles.id = user_roles.role_id"
                    " WHERE roles.name = 'admin' AND users.is_active"
                )
            ).scalar_one()
            return count
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "race", ["both demote themselves", "both delete themselves", "each deactivates the other"]
)
def test_two_admins_racing_to_remove_each_other_leave_one(
    server: LiveServer, database_url: str, race: str
) -> None:
    """The review's three races, each repeated: however the two requests interleave, one of
    them is refused (409) and one admin remains."""
    base = server.base_url
    for _ in range(ADMIN_RACE_ROUNDS):
        with httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            admins = _only_admins(database_url, 2, client, base)
        with parallel_client(2) as client:
            racing = functools.partial(_remove_an_admin, client, base, race, admins)
            statuses = sorted(all_at_once(2, racing))
        # The loser gets 409; or 401 when the winner deactivated it before its request got
        # past authentication (the two did not overlap that time).
        assert statuses in ([200, 409], [204, 409], [200, 401]), (race, statuses, server.log())
        assert _active_admins(database_url) == 1


def _remove_an_admin(
    client: httpx2.Client, base: str, race: str, admins: list[dict[str, str]], index: int
) -> int:
    me, other = admins[index], admins[1 - index]
    headers = {"Authorization": me["authorization"]}
    if race == "both demote themselves":
        url, change = f"{base}/api/v1/users/{me['id']}", {"is_superuser": False}
    elif race == "each deactivates the other":
        url, change = f"{base}/api/v1/users/{other['id']}", {"is_active": False}
    else:
        return client.delete(f"{base}{ME}", headers=headers).status_code
    return client.patch(url, headers=headers, json=change).status_code
