from starlette.testclient import TestClient

REGISTER = "/api/v1/auth/register"
PUBLIC_FIELDS = {
    "id",
    "name",
    "email",
    "is_active",
    "is_superuser",
    "is_verified",
    "created_at",
    "updated_at",
    "roles",
    "permissions",
}


def register(client: TestClient, **fields: object) -> tuple[int, dict[str, object]]:
    body = {"name": "Ann", "email": "ann@example.com", "password": "correct-horse", **fields}
    response = client.post(REGISTER, json=body)
    return response.status_code, response.json()


class TestRegister:
    def test_register_returns_the_public_user_without_any_password(
        self, client: TestClient
    ) -> None:
        status, body = register(client)
        assert status == 201
        assert set(body) == PUBLIC_FIELDS
        assert body["email"] == "ann@example.com"
        assert body["is_active"] is True
        assert body["is_superuser"] is False
        # Every new account holds member, which grants nothing beyond the account itself.
        assert (body["roles"], body["permissions"]) == (["member"], [])

    def test_email_is_stored_lower_cased(self, client: TestClient) -> None:
        status, body = register(client, email="Ann.Smith@Example.COM")
        assert status == 201
        assert body["email"] == "ann.smith@example.com"

    def test_duplicate_email_in_another_case_is_409(self, client: TestClient) -> None:
        assert register(client, email="ann@example.com")[0] == 201
        status, body = register(client, email="ANN@Example.com")
        assert status == 409
        assert body == {"detail": "A user with this email already exists"}

    def test_password_of_73_bytes_is_422(self, client: TestClient) -> None:
        status, body = register(client, password="a" * 73)
        assert status == 422
        assert "a" * 73 not in str(body)

    def test_password_of_25_euro_signs_is_422_because_it_is_75_bytes(
        self, client: TestClient
    ) -> None:
        status, body = register(client, password="€" * 25)
        assert status == 422
        assert "€" not in str(body)

    def test_password_of_exactly_72_bytes_is_accepted_and_logs_in(self, client: TestClient) -> None:
        password = "€" * 24  # 72 bytes in UTF-8
        assert register(client, password=password)[0] == 201
        response = client.post(
            "/api/v1/auth/login", data={"username": "ann@example.com", "password": password}
        )
        assert response.status_code == 200

    def test_password_shorter_than_8_bytes_is_422(self, client: TestClient) -> None:
        assert register(client, password="short12")[0] == 422

    def test_invalid_email_is_422(self, client: TestClient) -> None:
        for email in ("not-an-email", "a@@example.com", "a\x00b@example.com", "x" * 250 + "@e.io"):
            assert register(client, email=email)[0] == 422, email

    def test_blank_name_is_422(self, client: TestClient) -> None:
        assert register(client, name="   ")[0] == 422

    def test_privileged_fields_in_the_body_are_ignored(self, client: TestClient) -> None:
        status, body = register(
            client,
            is_superuser=True,
            is_active=False,
            id="00000000-0000-0000-0000-000000000001",
            hashed_password="x",
        )
        assert status == 201
        assert body["is_superuser"] is False
        assert body["is_active"] is True
        assert body["id"] != "00000000-0000-0000-0000-000000000001"

    def test_register_rate_limit_when_configured(self, client: TestClient, app: object) -> None:
        from fastapi import FastAPI

        assert isinstance(app, FastAPI)
        app.state.settings.REGISTER_RATE_LIMIT = "2/minute"
        assert register(client, email="a1@example.com")[0] == 201
        assert register(client, email="a2@example.com")[0] == 201
        response = client.post(
            REGISTER, json={"name": "A", "email": "a3@example.com", "password": "password1"}
        )
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
