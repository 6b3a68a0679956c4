"""The authenticated account cached in Redis: every write that decides whether a token is still
good (password, deactivation, demotion, deletion, a reset) ends the cached account, so the old
token is refused by the very next request. The rest of the suite runs without Redis, where
accounts are never cached; here the app has a Redis of the test module's own.
"""

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from tests.conftest import Account
from tests.support import RedisServer, redis_server, requires_redis_server

pytestmark = requires_redis_server

ME = "/api/v1/users/me"
USERS = "/api/v1/users"
NEW_PASSWORD = "another-password-456"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("account-cache")) as server:
        yield server


@pytest.fixture
def settings_overrides(redis: RedisServer) -> dict[str, object]:
    return {"REDIS_URL": redis.url}


@dataclass
class MovedTags:
    """The tags the app's cache was asked to move, and which of them as revocations (those
    make a write wait out the TTL when Redis is unreachable)."""

    revoked: set[str] = field(default_factory=set)
    invalidated: set[str] = field(default_factory=set)


@pytest.fixture
def moved(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> MovedTags:
    cache = app.state.cache
    real_revoke, real_invalidate = cache.revoke, cache.invalidate
    moved = MovedTags()

    async def revoke(tags: Iterable[str]) -> None:
        tags = list(tags)
        moved.revoked.update(tags)
        await real_revoke(tags)

    async def invalidate(tags: Iterable[str]) -> bool:
        tags = list(tags)
        moved.invalidated.update(tags)
        result: bool = await real_invalidate(tags)
        return result

    monkeypatch.setattr(cache, "revoke", revoke)
    monkeypatch.setattr(cache, "invalidate", invalidate)
    return moved


def served_from_the_cache(client: TestClient, app: FastAPI, account: Account) -> None:
    """Read /users/me until the account comes from Redis: the state every test starts in."""
    assert client.get(ME, headers=account.headers).status_code == 200  # a miss fills it
    hits = app.state.cache.hits["account"]
    assert client.get(ME, headers=account.headers).status_code == 200
    assert app.state.cache.hits["account"] > hits, "the account was not served from the cache"


RevokingWrite = Callable[[TestClient, Account, Account], None]


def change_own_password(client: TestClient, user: Account, _admin: Account) -> None:
    response = client.post(
        f"{ME}/password",
        headers=user.headers,
        json={"current_password": user.password, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204, response.text


def admin_sets_password(client: TestClient, user: Account, admin: Account) -> None:
    response = client.patch(
        f"{USERS}/{user.id}", headers=admin.headers, json={"password": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.text


def admin_deactivates(client: TestClient, user: Account, admin: Account) -> None:
    response = client.patch(f"{USERS}/{user.id}", headers=admin.headers, json={"is_active": False})
    assert response.status_code == 200, response.text


def admin_deletes(client: TestClient, user: Account, admin: Account) -> None:
    assert client.delete(f"{USERS}/{user.id}", headers=admin.headers).status_code == 204


def deletes_itself(client: TestClient, user: Account, _admin: Account) -> None:
    assert client.delete(ME, headers=user.headers).status_code == 204


@pytest.mark.parametrize(
    "write",
    [change_own_password, admin_sets_password, admin_deactivates, admin_deletes, deletes_itself],
)
def test_the_old_token_is_refused_by_the_next_request(
    client: TestClient,
    app: FastAPI,
    make_account: Callable[..., Account],
    moved: MovedTags,
    write: RevokingWrite,
) -> None:
    user, admin = make_account(), make_account(is_superuser=True)
    served_from_the_cache(client, app, user)
    write(client, user, admin)
    assert client.get(ME, headers=user.headers).status_code == 401
    # A revocation, so with Redis unreachable the write would wait until no worker can
    # serve the old account.
    assert f"user:{user.id}" in moved.revoked


def test_a_demoted_admin_loses_admin_routes_at_once(
    client: TestClient, app: FastAPI, make_account: Callable[..., Account], moved: MovedTags
) -> None:
    demoted, admin = make_account(is_superuser=True), make_account(is_superuser=True)
    served_from_the_cache(client, app, demoted)
    assert client.get(USERS, headers=demoted.headers).status_code == 200
    response = client.patch(
        f"{USERS}/{demoted.id}", headers=admin.headers, json={"is_superuser": False}
    )
    assert response.status_code == 200, response.text
    assert client.get(USERS, headers=demoted.headers).status_code == 403
    assert f"user:{demoted.id}" in moved.revoked


def test_a_password_reset_refuses_the_old_token_at_once(
    client: TestClient,
    app: FastAPI,
    account: Account,
    caplog: pytest.LogCaptureFixture,
    moved: MovedTags,
) -> None:
    served_from_the_cache(client, app, account)
    caplog.set_level("INFO", logger="app.mail")
    response = client.post("/api/v1/auth/password-recovery", json={"email": account.email})
    assert response.status_code == 202, response.text
    # Without SMTP_HOST (outside production) the mail, link included, is written to the log.
    links = re.findall(r"reset-password\?token=([A-Za-z0-9_-]+)", caplog.text)
    assert links, "no reset link was logged"
    response = client.post(
        "/api/v1/auth/reset-password", json={"token": links[-1], "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text
    assert client.get(ME, headers=account.headers).status_code == 401
    assert f"user:{account.id}" in moved.revoked


def test_a_name_change_is_seen_at_once_and_keeps_the_token(
    client: TestClient, app: FastAPI, account: Account, moved: MovedTags
) -> None:
    served_from_the_cache(client, app, account)
    assert client.patch(ME, headers=account.headers, json={"name": "Renamed"}).status_code == 200
    response = client.get(ME, headers=account.headers)
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    # Not a revocation: during a Redis outage it does not wait out the account's TTL.
    assert f"user:{account.id}" in moved.invalidated
    assert f"user:{account.id}" not in moved.revoked


def test_no_test_here_runs_without_redis(app: FastAPI) -> None:
    """Guards the module itself: with the account cache off, the tests above prove nothing."""
    assert app.state.cache.shared
