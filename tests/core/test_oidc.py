"""OIDC_PROVIDERS as settings: issuers over TLS unless on this machine, one name each, the
client secret from the entry, the environment or SECRETS_DIR. And the ID token's signature
algorithm, against a provider served here whose discovery document the test chooses."""

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from pydantic import ValidationError

from core.config import Settings
from core.oidc import InvalidIdToken, OidcProviders, ProviderUnavailable, VerifiedIdentity
from tests.support import free_port


def settings_with(*entries: dict[str, object]) -> Settings:
    return Settings(_env_file=None, OIDC_PROVIDERS=json.dumps(list(entries)))


def entry(**changes: object) -> dict[str, object]:
    return {
        "name": "corp",
        "issuer": "https://login.example.com",
        "client_id": "app",
        "client_secret": "s3cret-value",
        **changes,
    }


@pytest.mark.parametrize(
    "issuer",
    ["https://login.example.com", "http://127.0.0.1:8080", "http://localhost:9000", "http://[::1]"],
)
def test_an_issuer_is_https_or_on_a_loopback_address(issuer: str) -> None:
    (provider,) = settings_with(entry(issuer=issuer)).OIDC_PROVIDERS
    assert provider.issuer == issuer


@pytest.mark.parametrize(
    "issuer",
    [
        "http://login.example.com",
        "http://10.0.0.5",
        "http://127.0.0.1.example.com",
        "ftp://login.example.com",
        "login.example.com",
    ],
)
def test_any_other_issuer_is_refused_at_start_up(issuer: str) -> None:
    with pytest.raises(ValidationError, match="https"):
        settings_with(entry(issuer=issuer))


def test_names_are_url_safe_and_unique() -> None:
    with pytest.raises(ValidationError):
        settings_with(entry(name="Not Safe/"))
    with pytest.raises(ValidationError, match="each name at most once"):
        settings_with(entry(), entry())


def test_the_openid_scope_is_required() -> None:
    with pytest.raises(ValidationError, match="openid"):
        settings_with(entry(scopes=["email"]))


def test_the_secret_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_CORP_EU_CLIENT_SECRET", "from-the-environment")
    without = {key: value for key, value in entry(name="corp-eu").items() if key != "client_secret"}
    (provider,) = settings_with(without).OIDC_PROVIDERS
    assert provider.client_secret.get_secret_value() == "from-the-environment"
    # Never shown by the settings' repr (logs, error reports).
    assert "from-the-environment" not in repr(provider)


def test_the_secret_may_come_from_the_secrets_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "OIDC_CORP_CLIENT_SECRET").write_text("from-a-mounted-file\n")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("OIDC_CORP_CLIENT_SECRET", raising=False)
    without = {key: value for key, value in entry().items() if key != "client_secret"}
    (provider,) = settings_with(without).OIDC_PROVIDERS
    assert provider.client_secret.get_secret_value() == "from-a-mounted-file"


def test_a_provider_without_a_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OIDC_CORP_CLIENT_SECRET", raising=False)
    monkeypatch.delenv("SECRETS_DIR", raising=False)
    without = {key: value for key, value in entry().items() if key != "client_secret"}
    with pytest.raises(ValidationError, match="OIDC_CORP_CLIENT_SECRET"):
        settings_with(without)


@pytest.mark.parametrize(
    "uri",
    [
        "/relative",
        "app.example/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "https:/x",
        "https://a/b#x",
    ],
)
def test_redirect_uris_are_absolute_urls_to_return_to(uri: str) -> None:
    with pytest.raises(ValidationError, match="OIDC_REDIRECT_URIS"):
        Settings(_env_file=None, OIDC_REDIRECT_URIS=uri)


def test_redirect_uris_are_a_list_of_web_pages_or_app_schemes() -> None:
    given = "https://a.example/cb, com.example.app:/oauth"
    settings = Settings(_env_file=None, OIDC_REDIRECT_URIS=given)
    assert settings.OIDC_REDIRECT_URIS == ["https://a.example/cb", "com.example.app:/oauth"]


PRODUCTION_KEY = "k" * 64


def test_production_refuses_a_plain_http_redirect_uri_off_this_machine() -> None:
    with pytest.raises(ValidationError, match="must be https:// in production"):
        Settings(
            _env_file=None,
            ENVIRONMENT="production",
            SECRET_KEY=PRODUCTION_KEY,
            OIDC_REDIRECT_URIS="https://a.example/cb, http://a.example/cb",
        )


def test_production_allows_https_loopback_http_and_app_schemes() -> None:
    given = "https://a.example/cb, http://127.0.0.1:3000/cb, http://localhost/cb, com.ex.app:/o"
    settings = Settings(
        _env_file=None,
        ENVIRONMENT="production",
        SECRET_KEY=PRODUCTION_KEY,
        OIDC_REDIRECT_URIS=given,
    )
    assert len(settings.OIDC_REDIRECT_URIS) == 4
    # Elsewhere, plain http stays allowed (a development machine's own name, a test host).
    assert Settings(_env_file=None, OIDC_REDIRECT_URIS="http://dev.box/cb").OIDC_REDIRECT_URIS


# --- the ID token's algorithm, against a provider the test serves -------------------------------

ISSUER_CLIENT_ID = "app"
ISSUER_CLIENT_SECRET = "a-client-secret-long-enough-for-hs256"
NONCE = "the-nonce-that-was-sent"


@contextmanager
def serving_provider(advertised: list[str], sign: Callable[[RSAKey, str], str]) -> Iterator[str]:
    """A minimal OpenID provider on a loopback port: its discovery document advertises
    `advertised` as its ID token algorithms, its JWKS publishes its RSA key, and its token
    endpoint answers the ID token `sign(its key, its issuer)` makes. Its issuer."""
    signing = RSAKey.generate_key(2048, parameters={"kid": "provider-key"})
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    document = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/auth",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "id_token_signing_alg_values_supported": advertised,
    }

    class Handler(BaseHTTPRequestHandler):
        def _json(self, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._json(document)
            else:
                self._json({"keys": [signing.as_dict(private=False)]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            token = sign(signing, issuer)
            self._json({"access_token": "opaque", "token_type": "Bearer", "id_token": token})

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def claims(issuer: str) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": issuer,
        "aud": ISSUER_CLIENT_ID,
        "sub": "someone",
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }


def rs256(key: RSAKey, issuer: str) -> str:
    """Signed with the provider's published key."""
    return jwt.encode({"alg": "RS256", "kid": "provider-key"}, claims(issuer), key)


def hs256_with_the_client_secret(_key: RSAKey, issuer: str) -> str:
    """Signed with the secret the client shares with the provider (so anyone holding it,
    the API included, could forge one)."""
    return jwt.encode({"alg": "HS256"}, claims(issuer), OctKey.import_key(ISSUER_CLIENT_SECRET))


def provider_at(issuer: str, metadata_ttl: float = 3600) -> Settings:
    return Settings(
        _env_file=None,
        OIDC_PROVIDERS=json.dumps(
            [entry(issuer=issuer, client_id=ISSUER_CLIENT_ID, client_secret=ISSUER_CLIENT_SECRET)]
        ),
        OIDC_METADATA_TTL_SECONDS=metadata_ttl,
    )


def verify(issuer: str) -> VerifiedIdentity:
    settings = provider_at(issuer)
    return asyncio.run(
        OidcProviders(settings).verified_identity(
            "corp",
            code="a-code",
            redirect_uri="http://127.0.0.1/callback",
            code_verifier="v" * 43,
            nonce=NONCE,
        )
    )


def test_an_id_token_signed_with_an_advertised_key_algorithm_is_accepted() -> None:
    with serving_provider(["RS256"], rs256) as issuer:
        assert verify(issuer).subject == "someone"


@pytest.mark.parametrize("advertised", [["RS256", "HS256"], ["HS256"]])
def test_an_id_token_signed_with_the_client_secret_is_refused(advertised: list[str]) -> None:
    with (
        serving_provider(advertised, hs256_with_the_client_secret) as issuer,
        pytest.raises(InvalidIdToken),
    ):
        verify(issuer)


def test_a_provider_advertising_no_key_algorithm_has_every_id_token_refused() -> None:
    # Not even one its published key signs: no algorithm of ours is left, and an empty list
    # must not become the library's defaults (which include RS256).
    with serving_provider(["HS256", "none"], rs256) as issuer, pytest.raises(InvalidIdToken):
        verify(issuer)


@pytest.mark.parametrize("advertised", ["RS256", [{"alg": "RS256"}]], ids=["a-string", "objects"])
def test_a_malformed_list_of_algorithms_refuses_the_id_token_not_a_500(advertised: Any) -> None:
    with serving_provider(advertised, rs256) as issuer, pytest.raises(InvalidIdToken):
        verify(issuer)


# --- a provider that goes away ------------------------------------------------------------------


def test_a_stale_document_serves_while_a_refresh_fails_for_at_most_one_more_ttl() -> None:
    ttl = 1.0

    async def authorize(providers: OidcProviders) -> str:
        return await providers.authorization_url(
            "corp", redirect_uri="http://127.0.0.1/cb", state="s", nonce="n", code_verifier="v" * 43
        )

    async def walk() -> None:
        with serving_provider(["RS256"], rs256) as issuer:
            providers = OidcProviders(provider_at(issuer, metadata_ttl=ttl))
            fetched = time.monotonic()
            assert (await authorize(providers)).startswith(f"{issuer}/auth?")
        # The provider is gone. Past the TTL, the refresh fails: the document fetched
        # before still serves.
        await asyncio.sleep(fetched + 1.3 * ttl - time.monotonic())
        assert (await authorize(providers)).startswith(f"{issuer}/auth?")
        # Past one more TTL, it does not.
        await asyncio.sleep(fetched + 2.3 * ttl - time.monotonic())
        with pytest.raises(ProviderUnavailable):
            await authorize(providers)

    asyncio.run(walk())
