"""The token endpoint as standard OAuth2 clients use it: Authlib and requests-oauthlib, real
libraries over real HTTP against a live server. Sign in with the password grant, read the
account, refresh when the access token has expired (by the library's own automatic refresh
where it has one), and a reused refresh token raises the library's `invalid_grant` and ends
the session."""

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import InvalidGrantError, LegacyApplicationClient
from requests_oauthlib import OAuth2Session as OAuthlibSession

from tests.support import LiveServer, fresh_database, migrate, run_server

PASSWORD = "a-client-library-password"
CLIENT_ID = "mobile-app"  # a public client: the endpoint needs no client credentials


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        migrate(url)
        with run_server(url, tmp_path_factory.mktemp("logs")) as live:
            yield live


@pytest.fixture(autouse=True)
def plain_http_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """oauthlib refuses http:// unless told: the test server listens on 127.0.0.1 only."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def account(server: LiveServer) -> str:
    email = f"oauth-{uuid.uuid4().hex[:10]}@example.com"
    created = httpx2.post(
        f"{server.base_url}/api/v1/auth/register",
        json={"name": "Client", "email": email, "password": PASSWORD},
        timeout=15,
    )
    assert created.status_code == 201, created.text
    return email


def expired(token: dict[str, Any]) -> dict[str, Any]:
    """The token as a client holds it once its access token has run out."""
    return {**token, "expires_at": time.time() - 60, "expires_in": -60}


def test_authlib_signs_in_refreshes_by_itself_and_raises_invalid_grant_on_reuse(
    server: LiveServer,
) -> None:
    token_url = f"{server.base_url}/api/v1/auth/login"
    me = f"{server.base_url}/api/v1/users/me"
    email = account(server)
    saved: list[dict[str, Any]] = []
    with AuthlibSession(
        CLIENT_ID,
        token_endpoint=token_url,
        token_endpoint_auth_method="none",
        update_token=lambda token, **_: saved.append(token),
    ) as session:
        first = session.fetch_token(token_url, username=email, password=PASSWORD)
        assert first["token_type"] == "bearer"
        assert session.get(me, timeout=15).json()["email"] == email

        session.token = expired(first)
        assert session.get(me, timeout=15).status_code == 200  # refreshed on the way
        (renewed,) = saved
        assert renewed["refresh_token"] != first["refresh_token"]

        with pytest.raises(OAuthError) as reused:
            session.refresh_token(token_url, refresh_token=first["refresh_token"])
        assert reused.value.error == "invalid_grant"
        # The replay ended the session: the newest refresh token is refused too.
        with pytest.raises(OAuthError) as ended:
            session.refresh_token(token_url, refresh_token=renewed["refresh_token"])
        assert ended.value.error == "invalid_grant"


def test_requests_oauthlib_signs_in_refreshes_by_itself_and_raises_invalid_grant_on_reuse(
    server: LiveServer,
) -> None:
    token_url = f"{server.base_url}/api/v1/auth/login"
    me = f"{server.base_url}/api/v1/users/me"
    email = account(server)
    signing_in = OAuthlibSession(client=LegacyApplicationClient(client_id=CLIENT_ID))
    first = signing_in.fetch_token(
        token_url, username=email, password=PASSWORD, include_client_id=True, timeout=15
    )
    assert first["access_token"]

    saved: list[dict[str, Any]] = []
    session = OAuthlibSession(
        CLIENT_ID,
        token=expired(first),
        auto_refresh_url=token_url,
        auto_refresh_kwargs={"client_id": CLIENT_ID},
        token_updater=saved.append,
    )
    assert session.get(me, timeout=15).json()["email"] == email  # refreshed on the way
    (renewed,) = saved
    assert renewed["refresh_token"] != first["refresh_token"]

    with pytest.raises(InvalidGrantError):
        session.refresh_token(token_url, refresh_token=first["refresh_token"], timeout=15)
    with pytest.raises(InvalidGrantError):
        session.refresh_token(token_url, refresh_token=renewed["refresh_token"], timeout=15)


def test_a_wrong_password_raises_invalid_grant_in_both(server: LiveServer) -> None:
    token_url = f"{server.base_url}/api/v1/auth/login"
    email = account(server)
    with (
        AuthlibSession(CLIENT_ID, token_endpoint_auth_method="none") as authlib,
        pytest.raises(OAuthError) as refused,
    ):
        authlib.fetch_token(token_url, username=email, password="not-the-password")
    assert refused.value.error == "invalid_grant"
    with pytest.raises(InvalidGrantError):
        OAuthlibSession(client=LegacyApplicationClient(client_id=CLIENT_ID)).fetch_token(
            token_url, username=email, password="not-the-password", timeout=15
        )
