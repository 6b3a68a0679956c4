import uuid
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from sqlmodel import Session
from starlette.testclient import TestClient

from core.data.clock import utc_now
from features.users.models import User
from tests.conftest import Account

USERS = "/api/v1/users"


class TestAccessControl:
    def test_every_admin_route_is_403_for_a_regular_user(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        caller, other = make_account(), make_account()
        new_user = {"name": "X", "email": "x@example.com", "password": "password-123"}
        calls = [
            ("GET", USERS, None),
            ("POST", USERS, new_user),
            ("GET", f"{USERS}/{other.id}", None),
            ("PATCH", f"{USERS}/{other.id}", {"name": "Hacked"}),
            ("DELETE", f"{USERS}/{other.id}", None),
            ("GET", f"{USERS}/{caller.id}", None),
        ]
        for method, url, body in calls:
            response = client.request(method, url, headers=caller.headers, json=body)
            assert response.status_code == 403, (method, url)
        assert client.get("/api/v1/users/me", headers=other.headers).json()["name"] != "Hacked"

    def test_every_admin_route_is_401_without_a_token(self, client: TestClient) -> None:
        some_id = uuid.uuid4()
        for method, url in [
            ("GET", USERS),
            ("GET", f"{USERS}/{some_id}"),
            ("DELETE", f"{USERS}/{some_id}"),
        ]:
            response = client.request(method, url)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"


class TestListUsers:
    def test_page_shape_and_stable_order(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        for _ in range(4):
            make_account()
        first = client.get(USERS, params={"offset": 0, "limit": 2}, headers=superuser.headers)
        assert first.status_code == 200
        page = first.json()
        assert set(page) == {"items", "total", "offset", "limit", "next_cursor"}
        assert page["total"] == 5
        assert (page["offset"], page["limit"], len(page["items"])) == (0, 2, 2)
        everyone = client.get(USERS, headers=superuser.headers).json()["items"]
        second = client.get(USERS, params={"offset": 2, "limit": 2}, headers=superuser.headers)
        assert [u["id"] for u in page["items"] + second.json()["items"]] == [
            u["id"] for u in everyone[:4]
        ]
        public_fields = {"id", "name", "email", "is_active", "is_superuser", "is_verified"}
        public_fields |= {"roles", "permissions"}
        assert all(set(user) == public_fields | {"created_at", "updated_at"} for user in everyone)

    def test_total_is_right_on_every_kind_of_page(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        for _ in range(4):
            make_account()
        # 5 users: a full page, the short last page, an exact end, and past the end.
        for offset, limit, expected_items in ((0, 2, 2), (4, 2, 1), (3, 2, 2), (9, 2, 0)):
            page = client.get(
                USERS, params={"offset": offset, "limit": limit}, headers=superuser.headers
            ).json()
            assert (page["total"], len(page["items"])) == (5, expected_items), (offset, limit)

    def test_a_cursor_walk_sees_every_user_once_in_order_even_with_equal_times(
        self, client: TestClient, superuser: Account, session: Session
    ) -> None:
        same_moment = utc_now()
        for number in range(5):
            session.add(
                User(
                    name=f"Twin {number}",
                    email=f"twin-{number}@example.com",
                    hashed_password="x",
                    created_at=same_moment,
                )
            )
        session.commit()
        everyone = client.get(USERS, headers=superuser.headers).json()
        walked, cursor, pages = [], None, 0
        while True:
            params = {"limit": "2"} if cursor is None else {"limit": "2", "cursor": cursor}
            page = client.get(USERS, params=params, headers=superuser.headers).json()
            assert page["total"] == 6
            walked += [user["id"] for user in page["items"]]
            cursor, pages = page["next_cursor"], pages + 1
            if cursor is None:
                break
        assert walked == [user["id"] for user in everyone["items"]]
        assert len(set(walked)) == 6
        assert pages == 3
        assert everyone["next_cursor"] is None

    @pytest.mark.parametrize(
        "cursor",
        [
            "",
            "not-a-cursor",
            "W10",
            "WyJ4IiwgInkiXQ",
            "x" * 201,
            "WyIyMDI2LTAxLTAxIiwgMV0",
            # Decodes, but names a moment before year 1 (or after 9999) in UTC.
            "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwgIjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwIl0",
            "WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTE0OjAwIiwgIjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwIl0",
        ],
        ids=[
            "empty",
            "garbage",
            "empty-list",
            "bad-values",
            "too-long",
            "wrong-types",
            "before-year-1",
            "after-year-9999",
        ],
    )
    def test_a_cursor_this_api_did_not_make_is_422(
        self, client: TestClient, superuser: Account, cursor: str
    ) -> None:
        response = client.get(USERS, params={"cursor": cursor}, headers=superuser.headers)
        assert response.status_code == 422, response.text

    def test_cursor_and_offset_together_are_422(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        make_account()
        cursor = client.get(USERS, params={"limit": 1}, headers=superuser.headers).json()[
            "next_cursor"
        ]
        assert cursor
        response = client.get(
            USERS, params={"cursor": cursor, "offset": 1}, headers=superuser.headers
        )
        assert response.status_code == 422

    def test_limit_is_capped_at_100(self, client: TestClient, superuser: Account) -> None:
        response = client.get(USERS, params={"limit": 5000}, headers=superuser.headers)
        assert response.status_code == 200
        assert response.json()["limit"] == 100

    def test_negative_offset_and_zero_limit_are_422(
        self, client: TestClient, superuser: Account
    ) -> None:
        for params in ({"offset": -1}, {"limit": 0}, {"limit": "many"}):
            response = client.get(USERS, params=params, headers=superuser.headers)
            assert response.status_code == 422, params


class TestCreateUser:
    def test_superuser_may_set_flags(self, client: TestClient, superuser: Account) -> None:
        response = client.post(
            USERS,
            headers=superuser.headers,
            json={
                "name": "Second Admin",
                "email": "Admin2@Example.com",
                "password": "password-123",
                "is_superuser": True,
                "is_active": True,
            },
        )
        assert response.status_code == 201
        assert response.json()["is_superuser"] is True
        assert response.json()["email"] == "admin2@example.com"

    def test_taken_email_is_409(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        response = client.post(
            USERS,
            headers=superuser.headers,
            json={"name": "Dup", "email": account.email, "password": "password-123"},
        )
        assert response.status_code == 409


class TestUserById:
    def test_read_update_delete(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        url = f"{USERS}/{account.id}"
        assert client.get(url, headers=superuser.headers).json()["email"] == account.email
        updated = client.patch(url, headers=superuser.headers, json={"name": "Renamed"})
        assert updated.status_code == 200
        assert updated.json()["name"] == "Renamed"
        assert client.delete(url, headers=superuser.headers).status_code == 204
        assert client.get(url, headers=superuser.headers).status_code == 404

    def test_a_taken_email_is_409_and_changes_nothing(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        first, second = make_account(), make_account()
        # On PostgreSQL the change's reactions enqueue through the real queue, whose query
        # flushes the UPDATE before the commit: a 409 all the same, never a 500.
        response = client.patch(
            f"{USERS}/{second.id}", headers=superuser.headers, json={"email": first.email.upper()}
        )
        assert (response.status_code, response.json()) == (
            409,
            {"detail": "A user with this email already exists"},
        )
        shown = client.get(f"{USERS}/{second.id}", headers=superuser.headers).json()
        assert shown["email"] == second.email

    def test_unknown_id_is_404_everywhere(self, client: TestClient, superuser: Account) -> None:
        url = f"{USERS}/{uuid.uuid4()}"
        assert client.get(url, headers=superuser.headers).status_code == 404
        assert client.patch(url, headers=superuser.headers, json={"name": "x"}).status_code == 404
        assert client.delete(url, headers=superuser.headers).status_code == 404

    def test_malformed_id_is_422(self, client: TestClient, superuser: Account) -> None:
        assert client.get(f"{USERS}/not-a-uuid", headers=superuser.headers).status_code == 422

    def test_deactivation_kills_the_users_tokens(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        url = f"{USERS}/{account.id}"
        assert (
            client.patch(url, headers=superuser.headers, json={"is_active": False}).status_code
            == 200
        )
        assert client.get("/api/v1/users/me", headers=account.headers).status_code == 401
        refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert refresh.status_code == 401
        # Reactivation does not resurrect the old tokens.
        client.patch(url, headers=superuser.headers, json={"is_active": True})
        assert client.get("/api/v1/users/me", headers=account.headers).status_code == 401

    def test_admin_password_reset_kills_tokens(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        url = f"{USERS}/{account.id}"
        response = client.patch(url, headers=superuser.headers, json={"password": "reset-by-admin"})
        assert response.status_code == 200
        assert client.get("/api/v1/users/me", headers=account.headers).status_code == 401
        login = client.post(
            "/api/v1/auth/login", data={"username": account.email, "password": "reset-by-admin"}
        )
        assert login.status_code == 200


class TestLastSuperuser:
    def test_cannot_demote_or_deactivate_themself(
        self, client: TestClient, superuser: Account
    ) -> None:
        url = f"{USERS}/{superuser.id}"
        for change in ({"is_superuser": False}, {"is_active": False}):
            response = client.patch(url, headers=superuser.headers, json=change)
            assert response.status_code == 409, change
        assert client.delete(url, headers=superuser.headers).status_code == 409
        assert client.get("/api/v1/users/me", headers=superuser.headers).json()["is_superuser"]

    def test_an_inactive_superuser_does_not_count_as_another(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        active = make_account(is_superuser=True)
        make_account(is_superuser=True, is_active=False)
        url = f"{USERS}/{active.id}"
        for change in ({"is_superuser": False}, {"is_active": False}):
            response = client.patch(url, headers=active.headers, json=change)
            assert response.status_code == 409, change
        assert client.delete(url, headers=active.headers).status_code == 409
        assert client.delete("/api/v1/users/me", headers=active.headers).status_code == 409
        me = client.get("/api/v1/users/me", headers=active.headers).json()
        assert (me["is_superuser"], me["is_active"]) == (True, True)

    def test_with_another_superuser_demotion_is_allowed(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        first = make_account(is_superuser=True)
        make_account(is_superuser=True)
        url = f"{USERS}/{first.id}"
        response = client.patch(url, headers=first.headers, json={"is_superuser": False})
        assert response.status_code == 200
        assert response.json()["is_superuser"] is False


class TestListCaching:
    def test_the_cached_list_sees_every_write_to_any_account(
        self, client: TestClient, app: FastAPI, superuser: Account, account: Account
    ) -> None:
        def listed() -> dict[str, str]:
            page = client.get(USERS, headers=superuser.headers).json()
            return {user["email"]: user["name"] for user in page["items"]}

        first = listed()
        hits = app.state.cache.hits["response"]
        assert listed() == first
        assert (
            app.state.cache.hits["response"] == hits + 1
        )  # the second one was served from the cache
        created = client.post(
            USERS,
            headers=superuser.headers,
            json={"name": "New", "email": "new@example.com", "password": "password-123"},
        ).json()
        assert listed()["new@example.com"] == "New"
        client.patch("/api/v1/users/me", headers=account.headers, json={"name": "Renamed"})
        assert listed()[account.email] == "Renamed"
        client.delete(f"{USERS}/{created['id']}", headers=superuser.headers)
        assert "new@example.com" not in listed()
        registered = client.post(
            "/api/v1/auth/register",
            json={"name": "Signed up", "email": "signup@example.com", "password": "password-123"},
        )
        assert registered.status_code == 201
        assert listed()["signup@example.com"] == "Signed up"

    def test_query_strings_the_route_does_not_read_share_one_entry(
        self, client: TestClient, app: FastAPI, superuser: Account
    ) -> None:
        """Anyone who can list could otherwise fill the cache with one entry per junk
        parameter, and push out what matters (rate-limit counters on a shared Redis)."""
        assert client.get(USERS, headers=superuser.headers).status_code == 200
        hits = app.state.cache.hits["response"]
        for junk in ("1", "2", "3"):
            response = client.get(USERS, params={"junk": junk}, headers=superuser.headers)
            assert response.status_code == 200
        assert app.state.cache.hits["response"] == hits + 3
        # What the route does read still makes entries of its own.
        client.get(USERS, params={"limit": "1"}, headers=superuser.headers)
        assert app.state.cache.hits["response"] == hits + 3
