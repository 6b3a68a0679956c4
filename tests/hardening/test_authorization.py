"""A user can act only on their own account, and only on the fields meant for them."""

import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlmodel import Session
from starlette.testclient import TestClient

from features.users.models import User
from tests.conftest import Account

ME = "/api/v1/users/me"
USERS = "/api/v1/users"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
FORGED_ID = "00000000-0000-0000-0000-000000000001"
FORGED_TIME = "2000-01-01T00:00:00Z"
FORGED_HASH = "$2b$04$" + "a" * 53

# Fields no client may set on themself, with a value that would matter if it were applied.
PRIVILEGED_FIELDS: dict[str, object] = {
    "is_superuser": True,
    "is_active": False,
    "id": FORGED_ID,
    "hashed_password": FORGED_HASH,
    "token_version": 42,
    "created_at": FORGED_TIME,
}


def stored(session_factory: Callable[[], Session], user_id: uuid.UUID) -> dict[str, object]:
    with session_factory() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.model_dump()


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PATCH", {"name": "Hacked"}),
        ("PATCH", {"email": "hacked@example.com"}),
        ("PATCH", {"password": "hacked-password"}),
        ("PATCH", {"is_superuser": True}),
        ("PATCH", {"is_active": False}),
        ("DELETE", None),
    ],
)
def test_a_user_cannot_touch_another_user_by_id(
    client: TestClient,
    make_account: Callable[..., Account],
    session_factory: Callable[[], Session],
    method: str,
    body: dict[str, object] | None,
) -> None:
    caller, victim = make_account(), make_account()
    before = stored(session_factory, victim.user.id)
    response = client.request(method, f"{USERS}/{victim.id}", headers=caller.headers, json=body)
    assert response.status_code == 403
    assert response.json() == {"detail": "Not enough privileges"}
    assert stored(session_factory, victim.user.id) == before
    assert client.get(ME, headers=victim.headers).status_code == 200


def test_a_user_cannot_promote_themself_through_the_admin_route(
    client: TestClient, account: Account, session_factory: Callable[[], Session]
) -> None:
    before = stored(session_factory, account.user.id)
    response = client.patch(
        f"{USERS}/{account.id}", headers=account.headers, json={"is_superuser": True}
    )
    assert response.status_code == 403
    assert stored(session_factory, account.user.id) == before


def test_a_demoted_superuser_loses_admin_rights_at_once(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    admin, other_admin = make_account(is_superuser=True), make_account(is_superuser=True)
    demoted = client.patch(
        f"{USERS}/{admin.id}", headers=other_admin.headers, json={"is_superuser": False}
    )
    assert demoted.status_code == 200
    assert client.get(USERS, headers=admin.headers).status_code == 403


def _assert_untouched(row: dict[str, object], field: str) -> None:
    assert row["is_superuser"] is False
    assert row["is_active"] is True
    assert str(row["id"]) != FORGED_ID
    assert row["hashed_password"] != FORGED_HASH
    assert row["token_version"] == 0
    created = row["created_at"]
    assert isinstance(created, datetime)
    assert created.year != 2000, field


@pytest.mark.parametrize("field", sorted(PRIVILEGED_FIELDS))
def test_register_never_applies_a_privileged_field(
    client: TestClient, session_factory: Callable[[], Session], field: str
) -> None:
    password = "register-password"
    body = {"name": "Eve", "email": "eve@example.com", "password": password}
    response = client.post(REGISTER, json={**body, field: PRIVILEGED_FIELDS[field]})
    assert response.status_code == 201
    _assert_untouched(stored(session_factory, uuid.UUID(response.json()["id"])), field)
    login = client.post(LOGIN, data={"username": "eve@example.com", "password": password})
    assert login.status_code == 200


@pytest.mark.parametrize("field", sorted(PRIVILEGED_FIELDS))
def test_patch_me_never_applies_a_privileged_field(
    client: TestClient, account: Account, session_factory: Callable[[], Session], field: str
) -> None:
    response = client.patch(
        ME, headers=account.headers, json={"name": "Eve", field: PRIVILEGED_FIELDS[field]}
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Eve"
    _assert_untouched(stored(session_factory, account.user.id), field)
    assert client.get(ME, headers=account.headers).status_code == 200
    login = client.post(LOGIN, data={"username": account.email, "password": account.password})
    assert login.status_code == 200
