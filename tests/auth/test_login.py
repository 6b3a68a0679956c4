from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from tests.conftest import Account

LOGIN = "/api/v1/auth/login"


def attempt(client: TestClient, email: str, password: str) -> tuple[int, object, str | None]:
    response = client.post(LOGIN, data={"username": email, "password": password})
    return response.status_code, response.json(), response.headers.get("www-authenticate")


class TestLogin:
    def test_login_returns_a_bearer_token_pair(self, client: TestClient, account: Account) -> None:
        response = client.post(
            LOGIN, data={"username": account.email, "password": account.password}
        )
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 15 * 60

    def test_email_is_matched_in_any_letter_case(
        self, client: TestClient, account: Account
    ) -> None:
        assert attempt(client, account.email.upper(), account.password)[0] == 200

    def test_unknown_email_wrong_password_and_inactive_user_look_identical(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        active = make_account()
        inactive = make_account(is_active=False)
        wrong_password = attempt(client, active.email, "not-the-password")
        unknown_email = attempt(client, "nobody@example.com", active.password)
        inactive_user = attempt(client, inactive.email, inactive.password)
        assert wrong_password == unknown_email == inactive_user
        assert wrong_password == (
            401,
            {
                "detail": "Incorrect email or password",
                "error": "invalid_grant",
                "error_description": "Incorrect email or password",
            },
            "Bearer",
        )

    def test_a_megabyte_password_is_refused_without_a_500(
        self, client: TestClient, account: Account
    ) -> None:
        assert attempt(client, account.email, "x" * 1_000_000)[0] in (413, 422)

    def test_an_address_longer_than_any_address_is_422(self, client: TestClient) -> None:
        # RFC 5321: at most 254 characters; nothing longer reaches the limiter or a log.
        response = client.post(LOGIN, data={"username": "a" * 255, "password": "whatever"})
        assert response.status_code == 422

    def test_missing_form_fields_are_422(self, client: TestClient) -> None:
        assert client.post(LOGIN, data={"username": "a@example.com"}).status_code == 422


@pytest.mark.parametrize("settings_overrides", [{"LOGIN_RATE_LIMIT": "3/minute"}])
class TestLoginRateLimit:
    def test_fourth_attempt_on_one_account_is_429_with_retry_after(
        self, client: TestClient, account: Account
    ) -> None:
        # make_account already logged in once; two more failures reach the limit of 3.
        assert attempt(client, account.email, "wrong-password")[0] == 401
        assert attempt(client, account.email, "wrong-password")[0] == 401
        response = client.post(
            LOGIN, data={"username": account.email, "password": account.password}
        )
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.json() == {
            "detail": "Too many requests, try again later",
            "error": "temporarily_unavailable",
            "error_description": "Too many requests, try again later",
        }

    def test_the_account_counter_ignores_letter_case(
        self, client: TestClient, account: Account
    ) -> None:
        attempt(client, account.email.upper(), "wrong-password")
        attempt(client, account.email.title(), "wrong-password")
        assert attempt(client, account.email, account.password)[0] == 429

    def test_one_client_ip_is_limited_across_accounts(self, client: TestClient) -> None:
        for index in range(3):
            assert attempt(client, f"nobody{index}@example.com", "whatever-pw")[0] == 401
        assert attempt(client, "someone-else@example.com", "whatever-pw")[0] == 429
