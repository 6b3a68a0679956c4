"""Signing in through a real OpenID Connect provider, end to end: the authorize step, the
provider, the callback, the one-time code's exchange, and the accounts it finds, links or
makes."""

import uuid
from collections.abc import Callable

import pytest
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from core.data.audit import AuditEvent
from features.users import permissions as users_permissions
from features.users.models import User
from tests.conftest import Account
from tests.oidc.conftest import (
    CALLBACK,
    CLIENT_ID,
    CLIENT_SECRET,
    FRONTEND,
    PKCE,
    PROVIDER_NAME,
    Browser,
    OidcProvider,
    Rows,
    query_of,
)

API = "/api/v1"


def event_types(session_factory: Callable[[], Session]) -> list[str]:
    with session_factory() as session:
        found = session.exec(
            select(AuditEvent.type).order_by(col(AuditEvent.created_at), col(AuditEvent.id))
        )
        return list(found)


def mark_verified(session_factory: Callable[[], Session], user_id: str, verified: bool) -> None:
    with session_factory() as session:
        user = session.get(User, uuid.UUID(user_id))
        assert user is not None
        user.is_verified = verified
        session.add(user)
        session.commit()


def test_the_providers_are_listed_for_sign_in_buttons(client: TestClient) -> None:
    response = client.get(f"{API}/auth/oidc/providers")
    assert response.status_code == 200
    assert response.json() == [{"name": PROVIDER_NAME}]


def test_authorize_sends_the_browser_to_the_provider_with_pkce_state_and_nonce(
    client: TestClient, oidc_provider: OidcProvider, rows: Rows
) -> None:
    response = client.get(
        f"{API}/auth/oidc/{PROVIDER_NAME}/authorize",
        params={"redirect_uri": FRONTEND, **PKCE},
        follow_redirects=False,
    )
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"{oidc_provider.issuer}/auth?")
    query = query_of(location)
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == CALLBACK
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert len(query["state"]) >= 43
    assert len(query["nonce"]) >= 43
    # The challenge goes out; the verifier, the client secret and the state's digest do not.
    (attempt,) = rows.attempts()
    assert attempt.code_verifier not in location
    assert CLIENT_SECRET not in location
    assert attempt.state_hash != query["state"]
    assert query["state"] not in attempt.model_dump_json()
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("oidc_browser=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert f"Path={API}/auth/oidc/{PROVIDER_NAME}" in cookie
    # Over plain http (the test client), never Secure: the browser would drop it.
    assert "secure" not in cookie.lower()


def test_the_browser_cookie_is_secure_over_https(client: TestClient) -> None:
    response = client.get(
        f"https://testserver{API}/auth/oidc/{PROVIDER_NAME}/authorize",
        params={"redirect_uri": FRONTEND, **PKCE},
        follow_redirects=False,
    )
    assert response.status_code == 302
    cookie = response.headers["set-cookie"]
    # Host-only: a sibling subdomain cannot set a cookie of this name.
    assert cookie.startswith("__Host-oidc_browser=")
    assert "; Path=/;" in cookie
    assert "secure" in cookie.lower()
    assert "domain" not in cookie.lower()


def test_a_new_verified_address_makes_a_verified_account_and_signs_it_in(
    browser: Browser, rows: Rows, session_factory: Callable[[], Session]
) -> None:
    back = browser.sign_in(sub="new-person", email="New.Person@Example.com")
    # Only the one-time code reaches the frontend's URL: no token of any kind.
    assert set(back) == {"code"}

    tokens = browser.exchange(back["code"])
    assert tokens.status_code == 200, tokens.text
    assert set(tokens.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    me = browser.app.get(f"{API}/users/me", headers=bearer).json()
    assert me["email"] == "new.person@example.com"
    assert me["is_verified"] is True
    assert me["roles"] == ["member"]
    assert me["name"] == "Provider Person"
    # A session like any other: listed, and the refresh token rotates.
    (listed,) = browser.app.get(f"{API}/users/me/sessions", headers=bearer).json()
    assert listed["current"] is True
    rotated = browser.app.post(
        f"{API}/auth/refresh", json={"refresh_token": tokens.json()["refresh_token"]}
    )
    assert rotated.status_code == 200

    (user,) = rows.users("new.person@example.com")
    assert user.hashed_password is None
    (identity,) = rows.identities()
    assert (identity.provider, identity.subject, identity.user_id) == (
        PROVIDER_NAME,
        "new-person",
        user.id,
    )
    assert identity.email == "new.person@example.com"
    assert rows.attempts() == []  # spent
    assert event_types(session_factory)[-3:] == [
        "users.created",
        "oidc.identity_linked",
        "oidc.signed_in",
    ]


def test_a_known_identity_signs_its_account_in_again(browser: Browser, rows: Rows) -> None:
    first = browser.sign_in(sub="returning", email="returning@example.com")
    assert browser.exchange(first["code"]).status_code == 200
    # The provider now asserts another address: the identity, not the address, decides.
    again = browser.sign_in(sub="returning", email="moved@example.com")
    tokens = browser.exchange(again["code"]).json()
    me = browser.app.get(
        f"{API}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert me["email"] == "returning@example.com"
    assert len(rows.identities()) == 1
    assert rows.users("moved@example.com") == []


def test_a_verified_address_links_an_existing_verified_account(
    browser: Browser,
    make_account: Callable[..., Account],
    rows: Rows,
    session_factory: Callable[[], Session],
) -> None:
    account = make_account(email="owner@example.com")
    mark_verified(session_factory, account.id, True)

    back = browser.sign_in(sub="owner-at-provider", email="owner@example.com")
    tokens = browser.exchange(back["code"]).json()
    me = browser.app.get(
        f"{API}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert me["id"] == account.id
    (identity,) = rows.identities()
    assert str(identity.user_id) == account.id
    # The password still works beside it.
    login = {"username": "owner@example.com", "password": account.password}
    assert browser.app.post(f"{API}/auth/login", data=login).status_code == 200


def test_an_existing_unverified_account_is_never_linked(
    browser: Browser, make_account: Callable[..., Account], rows: Rows
) -> None:
    make_account(email="squatted@example.com")  # is_verified is False

    back = browser.sign_in(sub="real-owner", email="squatted@example.com")

    assert back == {"error": "account_exists_unverified"}
    assert rows.identities() == []
    assert rows.codes() == []
    assert len(rows.users("squatted@example.com")) == 1


def test_an_unverified_address_never_makes_an_account(browser: Browser, rows: Rows) -> None:
    back = browser.sign_in(sub="unproven", email="unproven@example.com", email_verified=False)
    assert back == {"error": "email_not_verified"}
    # Nor does an address the provider says nothing about.
    back = browser.sign_in(sub="silent", email="silent@example.com", email_verified=None)
    assert back == {"error": "email_not_verified"}
    assert rows.users("unproven@example.com") == []
    assert rows.users("silent@example.com") == []
    assert rows.identities() == []
    assert rows.codes() == []


def test_an_unverified_address_never_links_a_verified_account(
    browser: Browser,
    make_account: Callable[..., Account],
    rows: Rows,
    session_factory: Callable[[], Session],
) -> None:
    account = make_account(email="victim@example.com")
    mark_verified(session_factory, account.id, True)

    back = browser.sign_in(sub="attacker", email="victim@example.com", email_verified=False)

    assert back == {"error": "email_not_verified"}
    assert rows.identities() == []
    assert rows.codes() == []


def test_no_address_is_refused(browser: Browser, rows: Rows) -> None:
    assert browser.sign_in(sub="anonymous", email=None) == {"error": "email_missing"}
    assert rows.identities() == []


def test_an_inactive_account_is_refused(
    browser: Browser, rows: Rows, session_factory: Callable[[], Session]
) -> None:
    first = browser.sign_in(sub="leaving", email="leaving@example.com")
    (user,) = rows.users("leaving@example.com")
    with session_factory() as session:
        stored = session.get(User, user.id)
        assert stored is not None
        stored.is_active = False
        session.add(stored)
        session.commit()

    assert browser.sign_in(sub="leaving", email="leaving@example.com") == {
        "error": "account_inactive"
    }
    # A code issued before the deactivation is worth nothing now either.
    assert browser.exchange(first["code"]).status_code == 400


def test_giving_up_at_the_provider_comes_back_as_access_denied(
    browser: Browser, rows: Rows
) -> None:
    callback = browser.at_provider(browser.authorize(), sub="x", email=None, give_up=True)
    assert browser.back_at_frontend(callback) == {"error": "access_denied"}
    assert rows.identities() == []


def test_a_password_sign_in_is_refused_for_an_account_without_password(
    browser: Browser, session_factory: Callable[[], Session]
) -> None:
    back = browser.sign_in(sub="no-password", email="no.password@example.com")
    tokens = browser.exchange(back["code"]).json()

    for password in ("", "anything-at-all", "\x00\x00\x00\x00\x00\x00\x00\x00"):
        login = {"username": "no.password@example.com", "password": password}
        refused = browser.app.post(f"{API}/auth/login", data=login)
        assert refused.status_code in (401, 422)
    login = {"username": "no.password@example.com", "password": "anything-at-all"}
    refused = browser.app.post(f"{API}/auth/login", data=login)
    # The same answer as for an address nobody has.
    unknown = {"username": "nobody.here@example.com", "password": "anything-at-all"}
    assert refused.status_code == 401
    assert refused.json() == browser.app.post(f"{API}/auth/login", data=unknown).json()
    with session_factory() as session:
        reasons = session.exec(
            select(AuditEvent.details).where(AuditEvent.type == "auth.sign_in_failed")
        ).all()
    assert {"reason": "no_password"} in reasons

    change = {"current_password": "anything-at-all", "new_password": "a-new-password"}
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    answered = browser.app.post(f"{API}/users/me/password", json=change, headers=bearer)
    assert answered.status_code == 400
    assert "password recovery" in answered.json()["detail"]


@pytest.mark.parametrize(
    "held", [{"is_superuser": True}, {"roles": ["support"]}], ids=["admin", "support"]
)
def test_an_account_holding_more_than_a_members_permissions_is_never_linked_by_address(
    browser: Browser,
    make_account: Callable[..., Account],
    rows: Rows,
    session_factory: Callable[[], Session],
    held: dict[str, object],
    superuser: Account,
) -> None:
    # A support role: one permission beyond a member's.
    support = {"name": "support", "permissions": [users_permissions.READ]}
    made = browser.app.post(f"{API}/roles", json=support, headers=superuser.headers)
    assert made.status_code == 201, made.text
    account = make_account(email="staff@example.com", **held)
    mark_verified(session_factory, account.id, True)

    back = browser.sign_in(sub="staff-at-provider", email="staff@example.com")

    assert back == {"error": "account_privileged"}
    assert rows.identities() == []
    assert rows.codes() == []


@pytest.mark.parametrize("provider_changes", [{"link_by_email": False}])
def test_a_provider_may_be_kept_from_linking_by_address(
    browser: Browser,
    make_account: Callable[..., Account],
    rows: Rows,
    session_factory: Callable[[], Session],
) -> None:
    account = make_account(email="kept@example.com")
    mark_verified(session_factory, account.id, True)

    back = browser.sign_in(sub="kept-at-provider", email="kept@example.com")

    assert back == {"error": "account_exists"}
    # A new address still makes an account: only linking by address is off.
    assert set(browser.sign_in(sub="brand-new", email="brand.new@example.com")) == {"code"}
    (identity,) = rows.identities()
    assert identity.subject == "brand-new"
