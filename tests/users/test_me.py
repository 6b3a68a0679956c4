from collections.abc import Callable

from starlette.testclient import TestClient

from tests.conftest import Account

ME = "/api/v1/users/me"
PASSWORD = "/api/v1/users/me/password"


class TestReadMe:
    def test_returns_the_caller(self, client: TestClient, account: Account) -> None:
        response = client.get(ME, headers=account.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == account.id
        assert body["email"] == account.email
        assert "hashed_password" not in body
        assert "password" not in response.text

    def test_without_a_token_is_401_with_bearer_challenge(self, client: TestClient) -> None:
        response = client.get(ME)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "Not authenticated"}

    def test_basic_auth_is_401(self, client: TestClient) -> None:
        response = client.get(ME, headers={"Authorization": "Basic YTpi"})
        assert response.status_code == 401


class TestUpdateMe:
    def test_changes_name_and_email(self, client: TestClient, account: Account) -> None:
        response = client.patch(
            ME,
            headers=account.headers,
            json={
                "name": "New Name",
                "email": "New@Example.com",
                "current_password": account.password,
            },
        )
        assert response.status_code == 200
        assert response.json()["name"] == "New Name"
        assert response.json()["email"] == "new@example.com"
        assert client.get(ME, headers=account.headers).json()["email"] == "new@example.com"

    def test_taken_email_is_409(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        first, second = make_account(), make_account()
        # On PostgreSQL the change's reactions enqueue jobs through the real queue, whose
        # query flushes the UPDATE before the commit: a 409 all the same, never a 500.
        response = client.patch(
            ME,
            headers=second.headers,
            json={"email": first.email.upper(), "current_password": second.password},
        )
        assert (response.status_code, response.json()) == (
            409,
            {"detail": "A user with this email already exists"},
        )
        assert client.get(ME, headers=second.headers).json()["email"] == second.email

    def test_a_new_email_without_the_current_password_is_422_and_changes_nothing(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.patch(ME, headers=account.headers, json={"email": "moved@example.com"})
        assert response.status_code == 422
        assert "current_password is required" in response.text
        assert client.get(ME, headers=account.headers).json()["email"] == account.email

    def test_a_new_email_with_a_wrong_password_is_400_and_changes_nothing(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.patch(
            ME,
            headers=account.headers,
            json={"name": "Taken Over", "email": "moved@example.com", "current_password": "nope"},
        )
        assert (response.status_code, response.json()) == (
            400,
            {"detail": "Current password is incorrect"},
        )
        body = client.get(ME, headers=account.headers).json()
        assert (body["email"], body["name"]) == (account.email, account.user.name)

    def test_privileged_fields_are_never_applied(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.patch(
            ME,
            headers=account.headers,
            json={
                "is_superuser": True,
                "is_active": False,
                "id": "00000000-0000-0000-0000-000000000001",
                "hashed_password": "x",
            },
        )
        assert response.status_code == 200
        body = client.get(ME, headers=account.headers).json()
        assert body["is_superuser"] is False
        assert body["is_active"] is True
        assert body["id"] == account.id
        login = client.post(
            "/api/v1/auth/login", data={"username": account.email, "password": account.password}
        )
        assert login.status_code == 200

    def test_invalid_email_is_422(self, client: TestClient, account: Account) -> None:
        response = client.patch(
            ME, headers=account.headers, json={"email": "nope", "current_password": "x"}
        )
        assert response.status_code == 422


class TestChangePassword:
    def test_wrong_current_password_is_400(self, client: TestClient, account: Account) -> None:
        response = client.post(
            PASSWORD,
            headers=account.headers,
            json={"current_password": "not-it-at-all", "new_password": "brand-new-password"},
        )
        assert response.status_code == 400
        assert response.json() == {"detail": "Current password is incorrect"}

    def test_change_kills_every_earlier_token_and_the_new_password_works(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.post(
            PASSWORD,
            headers=account.headers,
            json={"current_password": account.password, "new_password": "brand-new-password"},
        )
        assert response.status_code == 204
        assert client.get(ME, headers=account.headers).status_code == 401
        refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert refresh.status_code == 401
        old = client.post(
            "/api/v1/auth/login", data={"username": account.email, "password": account.password}
        )
        assert old.status_code == 401
        new = client.post(
            "/api/v1/auth/login",
            data={"username": account.email, "password": "brand-new-password"},
        )
        assert new.status_code == 200

    def test_new_password_follows_the_length_rules(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.post(
            PASSWORD,
            headers=account.headers,
            json={"current_password": account.password, "new_password": "€" * 25},
        )
        assert response.status_code == 422
        assert account.password not in response.text


class TestDeleteMe:
    def test_delete_is_204_and_the_token_dies(self, client: TestClient, account: Account) -> None:
        assert client.delete(ME, headers=account.headers).status_code == 204
        assert client.get(ME, headers=account.headers).status_code == 401
        refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert refresh.status_code == 401

    def test_the_last_superuser_cannot_delete_themself(
        self, client: TestClient, superuser: Account
    ) -> None:
        response = client.delete(ME, headers=superuser.headers)
        assert response.status_code == 409
        assert client.get(ME, headers=superuser.headers).status_code == 200
