"""The token endpoint reads what OAuth2 clients send (Swagger's Authorize button included):
the password grant exactly as FastAPI's OAuth2PasswordRequestForm did, and the refresh grant;
its errors carry RFC 6749's `error` beside `detail` (tests/auth/test_oauth2_clients.py drives
it with real client libraries)."""

import pytest
from starlette.testclient import TestClient

from tests.conftest import Account

LOGIN = "/api/v1/auth/login"


def test_the_full_password_grant_form_logs_in(client: TestClient, account: Account) -> None:
    # What Swagger UI sends from its Authorize dialog.
    form = {
        "grant_type": "password",
        "username": account.email,
        "password": account.password,
        "scope": "",
        "client_id": "docs",
        "client_secret": "",
    }
    response = client.post(LOGIN, data=form)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"


@pytest.mark.parametrize("grant_type", ["client_credentials", "authorization_code", "Password"])
def test_another_grant_type_is_an_unsupported_grant_type(
    client: TestClient, account: Account, grant_type: str
) -> None:
    form = {"grant_type": grant_type, "username": account.email, "password": account.password}
    response = client.post(LOGIN, data=form)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "grant_type"]
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize(
    "form",
    [
        {"password": "correct-horse-battery"},
        {"username": "someone@example.com"},
        {"grant_type": "refresh_token"},
        {"grant_type": "refresh_token", "username": "a@example.com", "password": "p-12345678"},
    ],
)
def test_a_grant_without_its_fields_is_an_invalid_request_and_sends_nothing_back(
    client: TestClient, form: dict[str, str]
) -> None:
    response = client.post(LOGIN, data=form)
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["detail"][0]["loc"]) == ("invalid_request", ["body"])
    assert "needs" in body["detail"][0]["msg"]
    assert "correct-horse-battery" not in response.text


def test_the_refresh_grant_rotates_like_the_refresh_route(
    client: TestClient, account: Account
) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": account.refresh_token}
    renewed = client.post(LOGIN, data=form)
    assert renewed.status_code == 200, renewed.text
    assert set(renewed.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    replayed = client.post(LOGIN, data=form)
    assert replayed.status_code == 401
    assert replayed.json() == {
        "detail": "Invalid or expired refresh token",
        "error": "invalid_grant",
        "error_description": "Invalid or expired refresh token",
    }
    # The replay ended the session: its newest token is refused too.
    newest = {"grant_type": "refresh_token", "refresh_token": renewed.json()["refresh_token"]}
    assert client.post(LOGIN, data=newest).json()["error"] == "invalid_grant"


def test_a_json_body_is_not_a_login(client: TestClient, account: Account) -> None:
    response = client.post(LOGIN, json={"username": account.email, "password": account.password})
    assert response.status_code == 422
