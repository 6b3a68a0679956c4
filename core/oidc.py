"""OpenID Connect, the relying party's side: the providers of OIDC_PROVIDERS, their discovery
documents and keys (cached), the authorization URL, the code exchange and the ID token's
verification. It knows no account: features/oidc decides who signs in.

The protocol is Authlib's (PKCE S256, the token request, the ID token's claims: `iss`, `aud`,
`exp`, `iat`, `nonce`, `azp` when there are several audiences, `at_hash`) and the signature
joserfc's, against the provider's published keys; nothing here parses a JWT by hand.

A provider's discovery document and keys are fetched when first needed (and at start-up, in
the background) and kept OIDC_METADATA_TTL_SECONDS; when a refresh fails, the ones fetched
before serve for at most another OIDC_METADATA_TTL_SECONDS. An ID token signed by a key that is not
among them (the provider rotated its keys) fetches the keys again, at most once per
OIDC_JWKS_REFETCH_SECONDS, so forged tokens with made-up key ids cannot turn every callback
into a fetch. A provider that cannot be reached answers ProviderUnavailable (503), and is
left alone for RETRY_AFTER_FAILURE_SECONDS before it is tried again; the app starts and
serves everything else meanwhile.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from core.config import OidcProviderSettings, Settings, is_loopback_host
from core.errors import ServiceUnavailableError

logger = logging.getLogger("app.oidc")

RETRY_AFTER_FAILURE_SECONDS = 5.0
# Clock difference tolerated between the provider and this server for `exp` and `iat`.
CLOCK_LEEWAY_SECONDS = 60
# The signature algorithms an ID token may use: the provider's keys, never a shared secret
# or none.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DISCOVERY_PATH = "/.well-known/openid-configuration"
# OpenID Connect Core 1.0, 2: a subject is at most 255 ASCII characters. An address longer
# than SMTP allows (RFC 5321: a path of 256 octets, 254 of them the address) is no address.
SUBJECT_MAX_LENGTH = 255
EMAIL_MAX_LENGTH = 254


class ProviderUnavailable(ServiceUnavailableError):
    default_detail = "The sign-in provider cannot be reached right now; try again later"


class ProviderRefused(Exception):
    """The provider answered, but not with what a sign-in needs (a refused code, a token
    response without an ID token). `code` is what the flow reports (`error=<code>`)."""

    code = "provider_error"


class InvalidIdToken(ProviderRefused):
    """The ID token failed verification: signature, issuer, audience, expiry or nonce."""

    code = "invalid_id_token"


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who the provider says signed in, from a verified ID token."""

    subject: str
    email: str | None
    # True only when the provider asserts it: a missing claim is not verified.
    email_verified: bool
    name: str | None


@dataclass(slots=True)
class _Provider:
    settings: OidcProviderSettings
    document: dict[str, Any] | None = None
    keys: KeySet | None = None
    fetched_at: float = 0.0
    keys_fetched_at: float = 0.0
    unavailable_until: float = 0.0
    lock: asyncio.Lock | None = None


def _reachable_safely(url: object) -> bool:
    """An endpoint the provider publishes: https, or http on a loopback address."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return (
        parts.scheme == "http" and bool(parts.hostname) and is_loopback_host(parts.hostname or "")
    )


class OidcProviders:
    """The configured providers, with what has been learnt about each."""

    def __init__(self, settings: Settings) -> None:
        self._providers = {entry.name: _Provider(entry) for entry in settings.OIDC_PROVIDERS}
        self._ttl = settings.OIDC_METADATA_TTL_SECONDS
        self._refetch_interval = settings.OIDC_JWKS_REFETCH_SECONDS
        self._timeout = settings.OIDC_HTTP_TIMEOUT_SECONDS

    def names(self) -> list[str]:
        return list(self._providers)

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    # --- discovery and keys ------------------------------------------------------------------

    async def _get_json(self, url: str) -> Any:
        async with httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()

    async def _fetch(self, provider: _Provider) -> None:
        issuer = provider.settings.issuer
        document = await self._get_json(issuer.rstrip("/") + DISCOVERY_PATH)
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            # OpenID Connect Discovery 1.0, 4.3: the document must name the issuer it was
            # fetched from, exactly, or it is not that issuer's.
            raise ValueError("the discovery document names another issuer")
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not _reachable_safely(document.get(endpoint)):
                raise ValueError(f"the discovery document's {endpoint} is missing or not https")
        keys = KeySet.import_key_set(await self._get_json(document["jwks_uri"]))
        now = time.monotonic()
        provider.document, provider.keys = document, keys
        provider.fetched_at = provider.keys_fetched_at = now

    async def _ready(self, name: str) -> _Provider:
        """The provider with a fresh discovery document and keys, fetched if need be."""
        provider = self._providers[name]
        if provider.document is not None and time.monotonic() - provider.fetched_at < self._ttl:
            return provider
        if provider.lock is None:
            provider.lock = asyncio.Lock()
        async with provider.lock:
            now = time.monotonic()
            if provider.document is not None and now - provider.fetched_at < self._ttl:
                return provider  # another request fetched it meanwhile
            if now < provider.unavailable_until:
                if self._stale_but_usable(provider, now):
                    return provider
                raise ProviderUnavailable
            try:
                await self._fetch(provider)
            except (httpx2.HTTPError, ValueError, JoseError) as error:
                now = time.monotonic()
                provider.unavailable_until = now + RETRY_AFTER_FAILURE_SECONDS
                if self._stale_but_usable(provider, now):
                    logger.warning(
                        "OIDC provider %s: refresh failed (%s); the document and keys fetched "
                        "before are used meanwhile",
                        name,
                        type(error).__name__,
                    )
                    return provider
                logger.warning("OIDC provider %s unavailable: %s", name, type(error).__name__)
                raise ProviderUnavailable from error
        return provider

    def _stale_but_usable(self, provider: _Provider, now: float) -> bool:
        """A document (and keys) past its TTL still serves while a refresh fails, for at
        most one more TTL: a provider's short outage does not stop sign-ins, and a long one
        does not keep keys it may have revoked meanwhile in use for ever."""
        return provider.document is not None and now - provider.fetched_at < 2 * self._ttl

    async def warm_up(self) -> None:
        """Fetch every provider's discovery document and keys now, so the first sign-in
        waits for none; a provider that cannot be reached is only logged."""
        for name in self._providers:
            with contextlib.suppress(ProviderUnavailable):
                await self._ready(name)

    async def _refetch_keys(self, provider: _Provider) -> bool:
        """Fetch the keys again, unless that was done less than the refetch interval ago;
        True when they were."""
        assert provider.document is not None
        assert provider.lock is not None
        async with provider.lock:
            if time.monotonic() - provider.keys_fetched_at < self._refetch_interval:
                return False
            provider.keys_fetched_at = time.monotonic()
            try:
                provider.keys = KeySet.import_key_set(
                    await self._get_json(provider.document["jwks_uri"])
                )
            except (httpx2.HTTPError, ValueError, JoseError) as error:
                raise ProviderUnavailable from error
            return True

    # --- the flow ------------------------------------------------------------------------------

    def _client(self, provider: _Provider, redirect_uri: str) -> AsyncOAuth2Client:
        entry = provider.settings
        return AsyncOAuth2Client(
            client_id=entry.client_id,
            client_secret=entry.client_secret.get_secret_value(),
            scope=" ".join(entry.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self._timeout,
        )

    async def authorization_url(
        self, name: str, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where to send the browser: the provider's authorization endpoint with the code
        flow's parameters, PKCE's S256 challenge of `code_verifier`, `state` and `nonce`."""
        provider = await self._ready(name)
        assert provider.document is not None
        async with self._client(provider, redirect_uri) as client:
            url, _state = client.create_authorization_url(
                provider.document["authorization_endpoint"],
                state=state,
                nonce=nonce,
                code_verifier=code_verifier,
            )
        return str(url)

    async def verified_identity(
        self, name: str, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> VerifiedIdentity:
        """Trade the authorization code for the provider's tokens and verify the ID token;
        who signed in. The provider's tokens go no further than this function."""
        provider = await self._ready(name)
        assert provider.document is not None
        try:
            async with self._client(provider, redirect_uri) as client:
                token = await client.fetch_token(
                    provider.document["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except httpx2.TransportError as error:
            raise ProviderUnavailable from error
        except Exception as error:  # Authlib's OAuthError, an HTTP error status, bad JSON
            logger.info("OIDC provider %s refused the code: %s", name, type(error).__name__)
            raise ProviderRefused from error
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderRefused
        claims = await self._verify(provider, id_token, nonce, token.get("access_token"))
        email = claims.get("email")
        name_claim = claims.get("name")
        return VerifiedIdentity(
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            email_verified=claims.get("email_verified") is True,
            name=name_claim if isinstance(name_claim, str) and name_claim.strip() else None,
        )

    async def _verify(
        self, provider: _Provider, id_token: str, nonce: str, access_token: object
    ) -> dict[str, Any]:
        assert provider.document is not None
        assert provider.keys is not None
        advertised = provider.document.get("id_token_signing_alg_values_supported") or ["RS256"]
        if not isinstance(advertised, list):  # a malformed document: nothing it says is usable
            advertised = []
        algorithms = [
            alg for alg in advertised if isinstance(alg, str) and alg in ASYMMETRIC_ALGORITHMS
        ]
        if not algorithms:
            # The provider signs with none of them (the client secret, or nothing): refused.
            # An empty list would not mean "none" to the library but its own defaults.
            logger.info("OIDC ID token refused: the provider advertises no asymmetric algorithm")
            raise InvalidIdToken
        try:
            try:
                token = jwt.decode(id_token, provider.keys, algorithms=algorithms)
            except InvalidKeyIdError:
                # Perhaps the provider rotated its keys since they were fetched.
                if not await self._refetch_keys(provider):
                    raise
                token = jwt.decode(id_token, provider.keys, algorithms=algorithms)
            entry = provider.settings
            params: dict[str, Any] = {"nonce": nonce, "client_id": entry.client_id}
            if isinstance(access_token, str):
                params["access_token"] = access_token
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": entry.issuer},
                    "aud": {"essential": True, "value": entry.client_id},
                    "sub": {"essential": True},
                    "exp": {"essential": True},
                    "iat": {"essential": True},
                    "nonce": {"essential": True, "value": nonce},
                },
                params,
            )
            claims.validate(leeway=CLOCK_LEEWAY_SECONDS)
        except (JoseError, ValueError, KeyError, TypeError) as error:
            logger.info("OIDC ID token refused: %s", type(error).__name__)
            raise InvalidIdToken from error
        checked: dict[str, Any] = dict(claims)
        subject, email = checked.get("sub"), checked.get("email")
        if not isinstance(subject, str) or not 0 < len(subject) <= SUBJECT_MAX_LENGTH:
            raise InvalidIdToken
        if isinstance(email, str) and len(email) > EMAIL_MAX_LENGTH:
            raise InvalidIdToken
        return checked
