"""A real OpenID Connect provider for the OIDC tests (tests/oidc/provider: panva's
oidc-provider under Node.js, its packages installed by `make oidc-provider`, which `make test`
runs), and a browser that walks the sign-in flow over HTTP: the app through the test client,
the provider through its own HTTP client, each with its cookies, every redirect followed by
hand so each step can be checked or tampered with."""

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from features.oidc.models import ExchangeCode, Identity, LoginAttempt
from features.oidc.service import s256_challenge
from features.users.models import User
from tests.support import free_port, stop_process_group, wait_until_healthy

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
PROVIDER_NAME = "local"
CLIENT_ID = "template-app"
CLIENT_SECRET = "template-app-secret"
# The frontend's callback page, the one OIDC_REDIRECT_URIS lists.
FRONTEND = "https://app.example/auth/callback"
# Where the test client's app is: the provider sends the browser back there.
CALLBACK = f"http://testserver/api/v1/auth/oidc/{PROVIDER_NAME}/callback"
# The same, when the browser reaches the app over https.
HTTPS_CALLBACK = CALLBACK.replace("http://", "https://", 1)


def require_provider_packages() -> str:
    """The path to node; skip without the provider's packages, except in CI, where a
    missing toolchain must fail rather than pass unseen."""
    node = shutil.which("node")
    if node is not None and (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return node
    reason = (
        "Node.js is not installed"
        if node is None
        else "tests/oidc/provider's packages are not installed: run `make oidc-provider`"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class OidcProvider:
    issuer: str

    def jwks_fetches(self) -> int:
        stats = httpx2.get(f"{self.issuer}/_test/stats", timeout=5).json()
        count: int = stats["jwks_fetches"]
        return count


@pytest.fixture(scope="package")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    node = require_provider_packages()
    port = free_port()
    log_path = tmp_path_factory.mktemp("oidc-provider") / "provider.log"
    clients = [
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [CALLBACK, HTTPS_CALLBACK],
        }
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [node, "provider.js"],
            cwd=PROVIDER_DIR,
            env={**os.environ, "PORT": str(port), "CLIENTS": json.dumps(clients)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(
            issuer,
            process,
            lambda: log_path.read_text(errors="replace"),
            path="/.well-known/openid-configuration",
        )
        yield OidcProvider(issuer)
    finally:
        stop_process_group(process)


def provider_settings(issuer: str, **changes: object) -> dict[str, object]:
    entry = {
        "name": PROVIDER_NAME,
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **changes,
    }
    return {"OIDC_PROVIDERS": json.dumps([entry]), "OIDC_REDIRECT_URIS": FRONTEND}


@pytest.fixture
def extra_settings() -> dict[str, object]:
    """Parametrize to change more settings for one test."""
    return {}


@pytest.fixture
def provider_changes() -> dict[str, object]:
    """Parametrize to change the provider's entry in OIDC_PROVIDERS for one test."""
    return {}


@pytest.fixture
def settings_overrides(
    oidc_provider: OidcProvider,
    extra_settings: dict[str, object],
    provider_changes: dict[str, object],
) -> dict[str, object]:
    return {**provider_settings(oidc_provider.issuer, **provider_changes), **extra_settings}


def pkce_pair() -> tuple[str, str]:
    """A frontend's PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256_challenge(verifier)


def pkce_params(challenge: str) -> dict[str, str]:
    return {"code_challenge": challenge, "code_challenge_method": "S256"}


# A challenge for the authorize calls whose code is never traded.
PKCE = pkce_params(pkce_pair()[1])


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def without_query(url: str) -> str:
    return urlsplit(url)._replace(query="").geturl()


@dataclass
class Browser:
    """One browser: its cookies at the app (the test client's) and at the provider."""

    app: TestClient
    provider: httpx2.Client
    # The frontend's PKCE verifier of its latest authorize step, and of each code it got.
    code_verifier: str = ""
    verifiers: dict[str, str] = field(default_factory=dict)
    # Where the provider sends this browser back: HTTPS_CALLBACK when it reaches the app so.
    callback_url: str = CALLBACK

    def authorize(self, redirect_uri: str = FRONTEND) -> str:
        """The app's authorize step, with a new PKCE challenge; the provider URL it sends the
        browser to."""
        self.code_verifier, challenge = pkce_pair()
        response = self.app.get(
            f"/api/v1/auth/oidc/{PROVIDER_NAME}/authorize",
            params={"redirect_uri": redirect_uri, **pkce_params(challenge)},
            follow_redirects=False,
        )
        assert response.status_code == 302, response.text
        return response.headers["location"]

    def at_provider(
        self,
        authorization_url: str,
        *,
        sub: str,
        email: str | None,
        email_verified: bool | None = True,
        tamper: str | None = None,
        give_up: bool = False,
    ) -> str:
        """Sign in at the provider as `sub`; the callback URL it sends the browser back to."""
        origin = urlsplit(authorization_url)._replace(path="", query="", fragment="").geturl()
        # Signed out at the provider, so it asks who is signing in every time.
        self.provider.cookies.clear()
        response = self.provider.get(authorization_url)
        assert response.status_code in (302, 303), response.text
        interaction = urljoin(origin, response.headers["location"])
        assert self.provider.get(interaction).status_code == 200
        fields = {"sub": sub, "name": "Provider Person"}
        if email is not None:
            fields["email"] = email
        if email_verified is not None:
            fields["email_verified"] = "true" if email_verified else "false"
        if tamper is not None:
            fields["tamper"] = tamper
        step = "abort" if give_up else "login"
        response = self.provider.post(f"{interaction}/{step}", data=fields)
        # Through the provider's own redirects (back to its authorization endpoint) until it
        # sends the browser elsewhere: to the app's callback.
        while True:
            assert response.status_code in (302, 303), response.text
            location = urljoin(origin, response.headers["location"])
            if not location.startswith(origin + "/"):
                break
            response = self.provider.get(location)
        callback = location
        assert without_query(callback) == self.callback_url
        return callback

    def callback(self, callback_url: str) -> httpx2.Response:
        return self.app.get(callback_url, follow_redirects=False)

    def back_at_frontend(self, callback_url: str) -> dict[str, str]:
        """The callback step; the query the frontend's redirect URI gets."""
        response = self.callback(callback_url)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert without_query(location) == FRONTEND
        back = query_of(location)
        if "code" in back:
            self.verifiers[back["code"]] = self.code_verifier
        return back

    def sign_in(
        self,
        *,
        sub: str,
        email: str | None,
        email_verified: bool | None = True,
        tamper: str | None = None,
    ) -> dict[str, str]:
        """The whole browser-side flow; the query the frontend gets."""
        callback = self.at_provider(
            self.authorize(), sub=sub, email=email, email_verified=email_verified, tamper=tamper
        )
        return self.back_at_frontend(callback)

    def exchange(self, code: str, *, verifier: str | None = None) -> httpx2.Response:
        """Trade `code` with the verifier of the attempt it came from, or `verifier`."""
        return self.app.post(
            "/api/v1/auth/oidc/exchange",
            json={"code": code, "code_verifier": verifier or self.verifiers.get(code, "")},
        )


@pytest.fixture
def make_browser(client: TestClient) -> Iterator[Callable[[], Browser]]:
    opened: list[httpx2.Client] = []

    def make() -> Browser:
        provider = httpx2.Client(follow_redirects=False, timeout=10)
        opened.append(provider)
        return Browser(app=client, provider=provider)

    yield make
    for each in opened:
        each.close()


@pytest.fixture
def browser(make_browser: Callable[[], Browser]) -> Browser:
    return make_browser()


@dataclass
class Rows:
    """What the flow left in the database."""

    session_factory: Callable[[], Session]

    def users(self, email: str) -> list[User]:
        with self.session_factory() as session:
            return list(session.exec(select(User).where(User.email == email)))

    def identities(self) -> list[Identity]:
        with self.session_factory() as session:
            return list(session.exec(select(Identity)))

    def attempts(self) -> list[LoginAttempt]:
        with self.session_factory() as session:
            return list(session.exec(select(LoginAttempt)))

    def codes(self) -> list[ExchangeCode]:
        with self.session_factory() as session:
            return list(session.exec(select(ExchangeCode)))


@pytest.fixture
def rows(session_factory: Callable[[], Session]) -> Rows:
    return Rows(session_factory)
