from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection
from starlette.testclient import TestClient

from core.data.clock import utc_now
from tests.conftest import Account

REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"


def refresh(client: TestClient, token: str) -> tuple[int, dict[str, object]]:
    response = client.post(REFRESH, json={"refresh_token": token})
    return response.status_code, response.json()


class TestRefresh:
    def test_refresh_returns_a_new_pair_that_works(
        self, client: TestClient, account: Account
    ) -> None:
        status, pair = refresh(client, account.refresh_token)
        assert status == 200
        assert pair["refresh_token"] != account.refresh_token
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        assert client.get(ME, headers=headers).status_code == 200

    def test_a_spent_refresh_token_is_401(self, client: TestClient, account: Account) -> None:
        assert refresh(client, account.refresh_token)[0] == 200
        status, body = refresh(client, account.refresh_token)
        assert status == 401
        assert body == {"detail": "Invalid or expired refresh token"}

    def test_an_expired_refresh_token_is_401_at_both_doors(
        self, client: TestClient, account: Account, connection: Connection
    ) -> None:
        connection.execute(
            text("UPDATE refresh_tokens SET expires_at = :past"),
            {"past": utc_now() - timedelta(seconds=1)},
        )
        assert refresh(client, account.refresh_token) == (
            401,
            {"detail": "Invalid or expired refresh token"},
        )
        grant = {"grant_type": "refresh_token", "refresh_token": account.refresh_token}
        at_the_token_endpoint = client.post("/api/v1/auth/login", data=grant)
        assert at_the_token_endpoint.status_code == 401
        assert at_the_token_endpoint.json()["error"] == "invalid_grant"

    def test_replaying_a_spent_token_revokes_the_whole_family(
        self, client: TestClient, account: Account
    ) -> None:
        _, successor = refresh(client, account.refresh_token)
        assert refresh(client, account.refresh_token)[0] == 401  # theft detected
        assert refresh(client, str(successor["refresh_token"]))[0] == 401

    def test_replay_leaves_other_sessions_alone(self, client: TestClient, account: Account) -> None:
        other = client.post(
            "/api/v1/auth/login", data={"username": account.email, "password": account.password}
        ).json()
        refresh(client, account.refresh_token)
        refresh(client, account.refresh_token)
        assert refresh(client, other["refresh_token"])[0] == 200

    def test_an_access_token_is_refused_as_a_refresh_token(
        self, client: TestClient, account: Account
    ) -> None:
        assert refresh(client, account.access_token)[0] == 401

    def test_a_refresh_token_is_refused_as_an_access_token(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.get(ME, headers={"Authorization": f"Bearer {account.refresh_token}"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    def test_unknown_refresh_token_is_401(self, client: TestClient) -> None:
        assert refresh(client, "not-a-token")[0] == 401

    def test_empty_refresh_token_is_422(self, client: TestClient) -> None:
        assert client.post(REFRESH, json={"refresh_token": ""}).status_code == 422


class TestLogout:
    def test_logout_is_204_and_revokes_the_session(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.post(LOGOUT, json={"refresh_token": account.refresh_token})
        assert response.status_code == 204
        assert response.content == b""
        assert refresh(client, account.refresh_token)[0] == 401

    def test_logout_revokes_rotated_successors_too(
        self, client: TestClient, account: Account
    ) -> None:
        _, successor = refresh(client, account.refresh_token)
        client.post(LOGOUT, json={"refresh_token": account.refresh_token})
        assert refresh(client, str(successor["refresh_token"]))[0] == 401

    def test_logout_is_idempotent_and_unknown_tokens_get_204(
        self, client: TestClient, account: Account
    ) -> None:
        for token in (account.refresh_token, account.refresh_token, "never-issued"):
            assert client.post(LOGOUT, json={"refresh_token": token}).status_code == 204
