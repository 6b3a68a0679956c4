"""Throttling that stops guessers, not owners, against a real server behind a trusted proxy
(uvicorn honours X-Forwarded-For from 127.0.0.1, as it does from nginx in production), with
the shared Redis when the run has one and the default limits.

The review's finding: ten wrong passwords from ten addresses locked the owner out, and ten
requests a minute kept an admin out for good. Now failures from many addresses slow the
guesser, and the owner with the right password, from an address that has not failed, gets in.
"""

import os
import uuid
from collections.abc import Iterator

import httpx2
import pytest
import redis

from core.config import Settings
from tests.support import LiveServer, fresh_database, migrate, run_server

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
PASSWORD = "the-owners-password"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
# The defaults, stated here so a change of default is a change of this test too.
PER_ADDRESS = 10  # LOGIN_RATE_LIMIT: 10/minute
ACCOUNT_FAILURES = 20  # LOGIN_ACCOUNT_FAILURE_LIMIT: 20/hour
REGISTRATIONS = 20  # REGISTER_RATE_LIMIT: 20/hour


def shipped_default(name: str) -> str:
    value = Settings.model_fields[name].default
    assert isinstance(value, str)
    return value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        migrate(url)
        with run_server(
            url,
            tmp_path_factory.mktemp("logs"),
            # What a deployment gets without setting them (the test harness's own are off).
            LOGIN_RATE_LIMIT=shipped_default("LOGIN_RATE_LIMIT"),
            LOGIN_ACCOUNT_FAILURE_LIMIT=shipped_default("LOGIN_ACCOUNT_FAILURE_LIMIT"),
            REGISTER_RATE_LIMIT=shipped_default("REGISTER_RATE_LIMIT"),
            # A Redis database of this module's own keys: the run's Redis, as in production.
            REDIS_URL=REDIS_URL,
        ) as live:
            yield live


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def new_address() -> str:
    """A client address nobody has used yet in this run."""
    value = uuid.uuid4().int
    return f"10.{value % 250 + 1}.{value // 250 % 250 + 1}.{value // 62500 % 250 + 1}"


def owner(api: httpx2.Client) -> str:
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    response = api.post(
        REGISTER,
        json={"name": "Owner", "email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": new_address()},
    )
    assert response.status_code == 201, response.text
    return email


def sign_in(api: httpx2.Client, email: str, password: str, address: str) -> int:
    response = api.post(
        LOGIN,
        data={"username": email, "password": password},
        headers={"X-Forwarded-For": address},
    )
    if response.status_code == 429:
        assert int(response.headers["retry-after"]) >= 1
    return response.status_code


def test_failures_from_many_addresses_never_lock_the_owner_out(api: httpx2.Client) -> None:
    victim = owner(api)
    # More failures than the per-address limit, then more than the account's ceiling, each
    # from an address of its own: never near a per-address limit.
    for _ in range(ACCOUNT_FAILURES + 5):
        assert sign_in(api, victim, "a-wrong-guess", new_address()) == 401
    assert sign_in(api, victim, PASSWORD, new_address()) == 200


def test_past_the_ceiling_each_address_gets_one_more_guess(api: httpx2.Client) -> None:
    victim = owner(api)
    guessers = [new_address() for _ in range(ACCOUNT_FAILURES)]
    for address in guessers:
        assert sign_in(api, victim, "a-wrong-guess", address) == 401
    # The ceiling is reached: an address that has failed at this account is not heard again,
    # not even with the right password (it might be a guesser that just found it).
    assert sign_in(api, victim, "another-guess", guessers[0]) == 429
    assert sign_in(api, victim, PASSWORD, guessers[-1]) == 429
    # A new address gets its one guess; then it is out too.
    newcomer = new_address()
    assert sign_in(api, victim, "one-more-guess", newcomer) == 401
    assert sign_in(api, victim, "and-another", newcomer) == 429
    # The owner, from an address that has not failed, still gets in; so do other accounts
    # from the guessers' addresses.
    assert sign_in(api, victim, PASSWORD, new_address()) == 200
    assert sign_in(api, owner(api), PASSWORD, guessers[0]) == 200


def test_one_address_is_slowed_at_once(api: httpx2.Client) -> None:
    victim, address = owner(api), new_address()
    statuses = [sign_in(api, victim, f"guess-{n}", address) for n in range(PER_ADDRESS + 2)]
    assert statuses == [401] * PER_ADDRESS + [429, 429]
    # Another account from the same address is slowed too (the address's own limit)...
    assert sign_in(api, owner(api), PASSWORD, address) == 429
    # ...but not the owner elsewhere.
    assert sign_in(api, victim, PASSWORD, new_address()) == 200


def test_registration_is_throttled_per_address_by_default(api: httpx2.Client) -> None:
    address = new_address()
    statuses = [
        api.post(
            REGISTER,
            json={
                "name": "N",
                "email": f"n-{uuid.uuid4().hex[:10]}@example.com",
                "password": PASSWORD,
            },
            headers={"X-Forwarded-For": address},
        ).status_code
        for _ in range(REGISTRATIONS + 1)
    ]
    assert statuses == [201] * REGISTRATIONS + [429]


@pytest.mark.skipif(not REDIS_URL, reason="needs Redis (TEST_REDIS_URL)")
def test_an_unbounded_username_is_422_before_any_key_reaches_redis(
    api: httpx2.Client,
) -> None:
    store = redis.Redis.from_url(REDIS_URL)
    try:
        before = set(store.scan_iter(match="*login*", count=1000))
        memory = store.info("memory")["used_memory"]
        for _ in range(20):
            response = api.post(
                LOGIN,
                data={"username": "u" * 1_000_000, "password": "whatever"},
                headers={"X-Forwarded-For": new_address()},
            )
            assert response.status_code == 422, response.text[:200]
        assert set(store.scan_iter(match="*login*", count=1000)) == before
        assert store.info("memory")["used_memory"] - memory < 1_000_000
        # A long but valid one makes keys of the same fixed size as any other, with no part
        # of the address in them.
        long_name = "l" * 240 + "@example.com"
        assert sign_in(api, long_name, "whatever-it-is", new_address()) == 401
        made = set(store.scan_iter(match="*login*", count=1000)) - before
        assert made
        assert all(b"llll" not in key and b"example" not in key for key in made), made
        assert len({len(key) for key in made if b"login-failures" not in key}) == 1
    finally:
        store.close()
