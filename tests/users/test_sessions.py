"""Sessions through the API: where an account is signed in, and ending any of them. Ending a
session refuses its refresh token and its access tokens at once, even those the cache already
holds. Each security rule has a test that fails without it."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import create_engine, insert
from sqlmodel import Session, select
from starlette.testclient import TestClient

from core.data.clock import utc_now
from core.data.db import metadata
from core.security import digest_token, new_opaque_token
from features.users.models import AccountSession, RefreshToken
from features.users.permissions import MANAGE, READ
from tests.conftest import Account, alembic_config
from tests.roles.test_roles import create_role
from tests.support import fresh_database

ME = "/api/v1/users/me"
MY_SESSIONS = "/api/v1/users/me/sessions"
USERS = "/api/v1/users"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
SESSION_FIELDS = {
    "id",
    "created_at",
    "last_used_at",
    "expires_at",
    "user_agent",
    "client_ip",
    "current",
}


def session_of(access_token: str) -> str:
    return str(jwt.get_unverified_claims(access_token)["sid"])


def sign_in(client: TestClient, account: Account, user_agent: str = "tests") -> Account:
    """Another session of the same account (another device)."""
    response = client.post(
        "/api/v1/auth/login",
        data={"username": account.email, "password": account.password},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    return Account(account.user, account.password, tokens["access_token"], tokens["refresh_token"])


def sessions_of(client: TestClient, account: Account) -> list[dict[str, Any]]:
    response = client.get(MY_SESSIONS, headers=account.headers)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


def assert_refused(client: TestClient, signed_in: Account) -> None:
    """Neither the session's access token nor its refresh token works any more."""
    assert client.get(ME, headers=signed_in.headers).status_code == 401
    refreshed = client.post(REFRESH, json={"refresh_token": signed_in.refresh_token})
    assert refreshed.status_code == 401


def assert_works(client: TestClient, signed_in: Account) -> None:
    assert client.get(ME, headers=signed_in.headers).status_code == 200


class TestListing:
    def test_each_sign_in_is_a_session_and_the_callers_is_marked(
        self, client: TestClient, account: Account
    ) -> None:
        phone = sign_in(client, account, user_agent="Phone/1.0")
        listed = sessions_of(client, phone)
        assert len(listed) == 2
        assert all(set(item) == SESSION_FIELDS for item in listed)
        by_id = {item["id"]: item for item in listed}
        assert by_id[session_of(phone.access_token)]["current"] is True
        assert by_id[session_of(phone.access_token)]["user_agent"] == "Phone/1.0"
        assert by_id[session_of(account.access_token)]["current"] is False
        assert listed[0]["id"] == session_of(phone.access_token)  # latest used first

    def test_a_refresh_goes_on_in_the_same_session(
        self, client: TestClient, account: Account
    ) -> None:
        before = sessions_of(client, account)
        refreshed = client.post(
            REFRESH,
            json={"refresh_token": account.refresh_token},
            headers={"User-Agent": "Renewed/2.0"},
        ).json()
        assert session_of(refreshed["access_token"]) == session_of(account.access_token)
        renewed = Account(account.user, account.password, refreshed["access_token"], "")
        after = sessions_of(client, renewed)
        assert [item["id"] for item in after] == [item["id"] for item in before]
        assert after[0]["last_used_at"] > before[0]["last_used_at"]
        assert after[0]["user_agent"] == "Renewed/2.0"

    def test_ended_sessions_are_not_listed(self, client: TestClient, account: Account) -> None:
        other = sign_in(client, account)
        assert client.post(LOGOUT, json={"refresh_token": other.refresh_token}).status_code == 204
        assert [item["id"] for item in sessions_of(client, account)] == [
            session_of(account.access_token)
        ]

    def test_a_password_change_ends_every_session(
        self, client: TestClient, account: Account
    ) -> None:
        other = sign_in(client, account)
        changed = client.post(
            f"{ME}/password",
            headers=account.headers,
            json={"current_password": account.password, "new_password": "a-new-password-1"},
        )
        assert changed.status_code == 204
        fresh = Account(account.user, "a-new-password-1", "", "")
        fresh = sign_in(client, fresh)
        assert [item["id"] for item in sessions_of(client, fresh)] == [
            session_of(fresh.access_token)
        ]
        assert_refused(client, other)


class TestEnding:
    def test_ending_a_session_refuses_its_tokens_at_once(
        self, client: TestClient, account: Account
    ) -> None:
        laptop = sign_in(client, account)
        assert_works(client, laptop)  # its account is in the cache now
        ended = client.delete(
            f"{MY_SESSIONS}/{session_of(laptop.access_token)}", headers=account.headers
        )
        assert ended.status_code == 204
        assert_refused(client, laptop)
        assert_works(client, account)

    def test_signing_out_refuses_the_sessions_access_token_at_once(
        self, client: TestClient, account: Account
    ) -> None:
        assert_works(client, account)
        assert client.post(LOGOUT, json={"refresh_token": account.refresh_token}).status_code == 204
        assert_refused(client, account)

    def test_a_session_may_end_itself(self, client: TestClient, account: Account) -> None:
        mine = f"{MY_SESSIONS}/{session_of(account.access_token)}"
        assert client.delete(mine, headers=account.headers).status_code == 204
        assert_refused(client, account)

    def test_signing_out_everywhere_else_keeps_only_the_callers_session(
        self, client: TestClient, account: Account
    ) -> None:
        others = [sign_in(client, account) for _ in range(2)]
        assert client.delete(MY_SESSIONS, headers=account.headers).status_code == 204
        for other in others:
            assert_refused(client, other)
        assert_works(client, account)
        assert [item["id"] for item in sessions_of(client, account)] == [
            session_of(account.access_token)
        ]

    def test_another_accounts_session_is_not_found_and_keeps_working(
        self, client: TestClient, account: Account, make_account: Callable[..., Account]
    ) -> None:
        stranger = make_account()
        theirs = f"{MY_SESSIONS}/{session_of(stranger.access_token)}"
        response = client.delete(theirs, headers=account.headers)
        assert (response.status_code, response.json()) == (404, {"detail": "Session not found"})
        assert_works(client, stranger)
        refreshed = client.post(REFRESH, json={"refresh_token": stranger.refresh_token})
        assert refreshed.status_code == 200

    def test_an_ended_or_unknown_session_is_not_found(
        self, client: TestClient, account: Account
    ) -> None:
        other = sign_in(client, account)
        url = f"{MY_SESSIONS}/{session_of(other.access_token)}"
        assert client.delete(url, headers=account.headers).status_code == 204
        assert client.delete(url, headers=account.headers).status_code == 404
        unknown = client.delete(f"{MY_SESSIONS}/{uuid.uuid4()}", headers=account.headers)
        assert unknown.status_code == 404
        malformed = client.delete(f"{MY_SESSIONS}/not-a-uuid", headers=account.headers)
        assert malformed.status_code == 422

    def test_a_replayed_refresh_token_ends_the_session_and_its_access_tokens(
        self, client: TestClient, account: Account
    ) -> None:
        renewed = client.post(REFRESH, json={"refresh_token": account.refresh_token}).json()
        renewed_account = Account(
            account.user, account.password, renewed["access_token"], renewed["refresh_token"]
        )
        assert_works(client, renewed_account)
        replayed = client.post(REFRESH, json={"refresh_token": account.refresh_token})
        assert replayed.status_code == 401
        assert_refused(client, renewed_account)

    def test_an_api_key_can_neither_list_nor_end_sessions(
        self, client: TestClient, account: Account
    ) -> None:
        issued = client.post("/api/v1/api-keys", headers=account.headers, json={"name": "k"})
        key = {"Authorization": f"Bearer {issued.json()['key']}"}
        mine = f"{MY_SESSIONS}/{session_of(account.access_token)}"
        for response in (
            client.get(MY_SESSIONS, headers=key),
            client.delete(MY_SESSIONS, headers=key),
            client.delete(mine, headers=key),
        ):
            assert response.status_code == 403, response.text
        assert_works(client, account)


class TestAdministration:
    def test_a_user_manager_lists_and_ends_a_members_session(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        listed = client.get(f"{USERS}/{account.id}/sessions", headers=superuser.headers)
        assert listed.status_code == 200
        assert [item["id"] for item in listed.json()] == [session_of(account.access_token)]
        assert listed.json()[0]["current"] is False
        url = f"{USERS}/{account.id}/sessions/{session_of(account.access_token)}"
        assert client.delete(url, headers=superuser.headers).status_code == 204
        assert_refused(client, account)

    def test_a_session_of_another_account_is_not_found_under_this_one(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        first, second = make_account(), make_account()
        url = f"{USERS}/{first.id}/sessions/{session_of(second.access_token)}"
        assert client.delete(url, headers=superuser.headers).status_code == 404
        assert_works(client, second)
        unknown = client.get(f"{USERS}/{uuid.uuid4()}/sessions", headers=superuser.headers)
        assert unknown.status_code == 404

    def test_a_member_may_not_see_or_end_anyone_elses_sessions(
        self, client: TestClient, account: Account, make_account: Callable[..., Account]
    ) -> None:
        other = make_account()
        sessions = f"{USERS}/{other.id}/sessions"
        assert client.get(sessions, headers=account.headers).status_code == 403
        one = f"{sessions}/{session_of(other.access_token)}"
        assert client.delete(one, headers=account.headers).status_code == 403
        assert_works(client, other)

    def test_a_user_manager_cannot_reach_an_admins_sessions(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        create_role(client, superuser, "support", READ, MANAGE)
        agent = make_account(roles=["support"])
        sessions = f"{USERS}/{superuser.id}/sessions"
        assert client.get(sessions, headers=agent.headers).status_code == 403
        one = f"{sessions}/{session_of(superuser.access_token)}"
        assert client.delete(one, headers=agent.headers).status_code == 403
        assert_works(client, superuser)

    def test_an_admins_api_key_cannot_end_anyones_session(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        issued = client.post(
            "/api/v1/api-keys",
            headers=superuser.headers,
            json={"name": "k", "permissions": [MANAGE]},
        )
        assert issued.status_code == 201, issued.text
        key = {"Authorization": f"Bearer {issued.json()['key']}"}
        sessions = f"{USERS}/{account.id}/sessions"
        assert client.get(sessions, headers=key).status_code == 200  # reading is the key's right
        ended = client.delete(f"{sessions}/{session_of(account.access_token)}", headers=key)
        assert ended.status_code == 403, ended.text
        assert_works(client, account)


class TestRollingUpdate:
    """Refresh tokens issued before sessions existed keep working."""

    def test_a_refresh_token_without_a_session_gets_one_on_its_first_refresh(
        self,
        client: TestClient,
        account: Account,
        session_factory: Callable[[], Session],
    ) -> None:
        family, token = uuid.uuid4(), new_opaque_token()
        with session_factory() as session:
            session.add(
                RefreshToken(
                    user_id=account.user.id,
                    family_id=family,
                    token_hash=digest_token(token),
                    token_version=0,
                    expires_at=utc_now() + timedelta(days=1),
                )
            )
            session.commit()
        refreshed = client.post(REFRESH, json={"refresh_token": token})
        assert refreshed.status_code == 200, refreshed.text
        assert session_of(refreshed.json()["access_token"]) == str(family)
        with session_factory() as session:
            adopted = session.get(AccountSession, family)
            assert adopted is not None
            assert adopted.user_id == account.user.id
        replayed = client.post(REFRESH, json={"refresh_token": token})
        assert replayed.status_code == 401
        renewed = Account(account.user, "", refreshed.json()["access_token"], "")
        assert client.get(ME, headers=renewed.headers).status_code == 401

    def test_the_migration_makes_each_token_family_a_session(self, tmp_path: Path) -> None:
        with fresh_database(tmp_path) as url:
            engine = create_engine(url)
            config = alembic_config()
            config.attributes["url"] = url
            command.upgrade(config, "0c43dccb050c")  # the revision before sessions
            user_id, live, spent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            now = utc_now()
            # Those two tables are as the models have them today.
            users, tokens = metadata.tables["users"], metadata.tables["refresh_tokens"]
            rows = [
                (live, 1, now - timedelta(days=3), now + timedelta(days=4), now),
                (live, 2, now - timedelta(days=1), now + timedelta(days=6), None),
                (spent, 2, now - timedelta(days=2), now + timedelta(days=5), now),
            ]
            with engine.begin() as connection:
                connection.execute(
                    insert(users).values(
                        id=user_id,
                        name="Old",
                        email="old@example.com",
                        hashed_password="x",
                        is_active=True,
                        is_superuser=False,
                        is_verified=False,
                        token_version=2,
                        created_at=now,
                        updated_at=now,
                    )
                )
                for family, version, created, expires, revoked in rows:
                    connection.execute(
                        insert(tokens).values(
                            id=uuid.uuid4(),
                            user_id=user_id,
                            family_id=family,
                            token_hash=digest_token(new_opaque_token()),
                            token_version=version,
                            created_at=created,
                            expires_at=expires,
                            revoked_at=revoked,
                        )
                    )
            command.upgrade(config, "head")
            with Session(engine) as session:
                found = {row.id: row for row in session.exec(select(AccountSession))}
            engine.dispose()
        assert set(found) == {live, spent}
        first = found[live]
        assert (first.user_id, first.token_version, first.ended_at) == (user_id, 2, None)
        assert first.created_at.date() == (now - timedelta(days=3)).date()
        assert first.last_used_at.date() == (now - timedelta(days=1)).date()
        assert first.expires_at.date() == (now + timedelta(days=6)).date()
        assert found[spent].ended_at is not None


def test_a_session_shows_the_address_and_user_agent_of_its_latest_use(
    app: FastAPI, client: TestClient, account: Account
) -> None:
    def client_at(address: str, agent: str) -> TestClient:
        other = TestClient(app, client=(address, 50000), headers={"User-Agent": agent})
        # On the running client's event loop, whose lifespan the app already ran: a loop of
        # its own would leave connections bound to it behind once it closes.
        other.portal = client.portal
        return other

    laptop = client_at("203.0.113.7", "Laptop/1.0")
    signed_in = sign_in(laptop, account, user_agent="Laptop/1.0")
    first = sessions_of(laptop, signed_in)[0]
    assert (first["client_ip"], first["user_agent"]) == ("203.0.113.7", "Laptop/1.0")
    moved = client_at("2001:db8::1", "Laptop/2.0")
    renewed = moved.post(REFRESH, json={"refresh_token": signed_in.refresh_token}).json()
    again = Account(account.user, account.password, renewed["access_token"], "")
    latest = sessions_of(moved, again)[0]
    assert (latest["id"], latest["client_ip"]) == (first["id"], "2001:db8::1")
    assert latest["user_agent"] == "Laptop/2.0"
