"""The login form reads what OAuth2 password-grant clients send (Swagger's Authorize button
included), exactly as FastAPI's OAuth2PasswordRequestForm did."""

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


@pytest.mark.parametrize("grant_type", ["client_credentials", "refresh_token", "Password"])
def test_another_grant_type_is_422(client: TestClient, account: Account, grant_type: str) -> None:
    form = {"grant_type": grant_type, "username": account.email, "password": account.password}
    response = client.post(LOGIN, data=form)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "grant_type"]


@pytest.mark.parametrize("missing", ["username", "password"])
def test_a_missing_field_is_422_and_sends_nothing_back(
    client: TestClient, account: Account, missing: str
) -> None:
    form = {"username": account.email, "password": account.password}
    del form[missing]
    response = client.post(LOGIN, data=form)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", missing]]
    assert account.password not in response.text


def test_a_json_body_is_not_a_login(client: TestClient, account: Account) -> None:
    response = client.post(LOGIN, json={"username": account.email, "password": account.password})
    assert response.status_code == 422
