"""HTTP routes for OpenID Connect: the providers, the browser's authorize and callback steps,
the one-time code's exchange, and the account's linked identities."""

import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from core.errors import (
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
    error_responses,
)
from core.http.caching import NOT_MODIFIED
from core.http.deps import (
    ClientIP,
    DatabaseDep,
    OidcDep,
    PasswordHasherDep,
    RateLimiterDep,
    SettingsDep,
)
from core.http.oauth2 import TokenPair
from core.security import new_opaque_token
from features.oidc import service
from features.oidc.errors import (
    CallbackUrlTooLong,
    CodeVerifierMismatch,
    CurrentPasswordRequired,
    IdentityNotFound,
    InvalidExchangeCode,
    InvalidSignInState,
    LastSignInMethod,
    RecentSignInRequired,
    RedirectUriNotAllowed,
    UnknownProvider,
)
from features.oidc.models import (
    CODE_CHALLENGE_PATTERN,
    REDIRECT_URI_MAX_LENGTH,
    AuthorizationUrl,
    CodeExchange,
    IdentityPublic,
    LinkRequest,
    OidcProviderPublic,
)
from features.users.dependencies import CurrentUser, SignedIn
from features.users.errors import SessionRequired, WrongPassword

router = APIRouter(tags=["oidc"])

# The cookie that binds a sign-in attempt to the browser that began it: a random value, read
# only by the authorize and callback steps, never by scripts, sent on the provider's redirect
# back (a top-level navigation: SameSite=Lax allows it) and on nothing cross-site.
BROWSER_COOKIE = "oidc_browser"
# Its name over https: a browser takes a `__Host-` cookie only from this very host, over
# https, with Path=/ and no Domain, so a sibling subdomain cannot plant a binding of its
# choosing (cookie tossing) for a login-CSRF attempt. The prefix needs Path=/: the cookie
# then goes to every path of the API's host, still HttpOnly and SameSite=Lax.
HOST_BROWSER_COOKIE = "__Host-" + BROWSER_COOKIE
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# What the browser-facing steps answer besides their errors.
REDIRECT: dict[int | str, dict[str, Any]] = {
    302: {"description": "A redirect: to the provider, or back to the frontend's redirect_uri"}
}
QUERY_VALUE_MAX_LENGTH = 2048


def _callback_uri(request: Request, settings: SettingsDep, provider: str) -> str:
    """The URL the provider sends the browser back to, as registered there."""
    url = request.url_for("callback", provider=provider)
    if settings.OIDC_CALLBACK_BASE_URL:
        return settings.OIDC_CALLBACK_BASE_URL + url.path
    return str(url)


def _over_https(request: Request, settings: SettingsDep) -> bool:
    """Whether the browser reaches the API over https (directly, or through a proxy that
    says so, or as OIDC_CALLBACK_BASE_URL says)."""
    return request.url.scheme == "https" or settings.OIDC_CALLBACK_BASE_URL.startswith("https://")


def _cookie_name(request: Request, settings: SettingsDep) -> str:
    return HOST_BROWSER_COOKIE if _over_https(request, settings) else BROWSER_COOKIE


def _browser_binding(request: Request, settings: SettingsDep) -> str:
    """The browser's binding value: the one it has (two tabs signing in at once keep
    theirs), or a new one."""
    current = request.cookies.get(_cookie_name(request, settings), "")
    return current if _COOKIE_VALUE.match(current) else new_opaque_token()


def _bind(
    response: Response, request: Request, settings: SettingsDep, provider: str, value: str
) -> None:
    if _over_https(request, settings):
        response.set_cookie(
            HOST_BROWSER_COOKIE,
            value,
            max_age=int(service.ATTEMPT_LIFETIME.total_seconds()),
            path="/",
            httponly=True,
            samesite="lax",
            secure=True,
        )
        return
    # Plain http in development (a Secure cookie would be dropped): sent to this provider's
    # authorize and callback steps only (/api/v1/auth/oidc/<name>).
    provider_path = request.url_for("callback", provider=provider).path.removesuffix("/callback")
    response.set_cookie(
        BROWSER_COOKIE,
        value,
        max_age=int(service.ATTEMPT_LIFETIME.total_seconds()),
        path=provider_path,
        httponly=True,
        samesite="lax",
    )


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=status.HTTP_302_FOUND)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(
    "/auth/oidc/providers",
    response_model=list[OidcProviderPublic],
    summary="List the OpenID Connect providers",
    responses=NOT_MODIFIED,
)
async def list_providers(oidc: OidcDep) -> list[OidcProviderPublic]:
    """The providers people may sign in with, for sign-in buttons."""
    return service.providers(oidc)


@router.get(
    "/auth/oidc/{provider}/authorize",
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
    summary="Begin signing in with a provider",
    responses={
        **REDIRECT,
        **error_responses(
            UnknownProvider,
            RedirectUriNotAllowed,
            CallbackUrlTooLong,
            TooManyRequestsError,
            ServiceUnavailableError,
        ),
    },
)
async def authorize(
    provider: str,
    redirect_uri: Annotated[str, Query(max_length=REDIRECT_URI_MAX_LENGTH)],
    code_challenge: Annotated[
        str,
        Query(
            pattern=CODE_CHALLENGE_PATTERN,
            description="PKCE (RFC 7636): base64url(SHA-256(code_verifier)), unpadded; keep "
            "the verifier (43 to 128 random characters) for the exchange",
        ),
    ],
    code_challenge_method: Annotated[Literal["S256"], Query(description="Only S256")],
    request: Request,
    db: DatabaseDep,
    oidc: OidcDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
    client_ip: ClientIP,
) -> RedirectResponse:
    """Navigate the browser here (not a fetch): it goes on to the provider, and comes back
    to `redirect_uri` (one of OIDC_REDIRECT_URIS, exactly) with `code` to trade at
    `POST /auth/oidc/exchange` with the verifier of `code_challenge`, or `error`. 503 while
    the provider cannot be reached."""
    browser = _browser_binding(request, settings)
    url = await service.begin(
        db,
        oidc,
        settings,
        limiter,
        client_ip=client_ip,
        provider=provider,
        redirect_uri=redirect_uri,
        callback_uri=_callback_uri(request, settings, provider),
        browser=browser,
        code_challenge=code_challenge,
    )
    response = _redirect(url)
    _bind(response, request, settings, provider, browser)
    return response


@router.get(
    "/auth/oidc/{provider}/callback",
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
    summary="Where the provider sends the browser back",
    responses={
        **REDIRECT,
        **error_responses(UnknownProvider, InvalidSignInState),
    },
)
async def callback(
    provider: str,
    request: Request,
    db: DatabaseDep,
    oidc: OidcDep,
    settings: SettingsDep,
    state: Annotated[str | None, Query(max_length=QUERY_VALUE_MAX_LENGTH)] = None,
    code: Annotated[str | None, Query(max_length=QUERY_VALUE_MAX_LENGTH)] = None,
    error: Annotated[str | None, Query(max_length=QUERY_VALUE_MAX_LENGTH)] = None,
) -> RedirectResponse:
    """Register this URL at the provider. It redirects to the frontend's `redirect_uri`
    with `code` (a sign-in), `linked=<provider>` (a link) or `error=<code>`; an unknown or
    spent `state` is a 400, having nowhere trusted to redirect to."""
    if state is None:
        raise InvalidSignInState
    url = await service.finish(
        db,
        oidc,
        settings,
        provider=provider,
        state=state,
        browser=request.cookies.get(_cookie_name(request, settings)),
        code=code,
        error=error,
    )
    return _redirect(url)


@router.post(
    "/auth/oidc/exchange",
    response_model=TokenPair,
    summary="Trade a sign-in's one-time code for tokens",
    responses=error_responses(InvalidExchangeCode, CodeVerifierMismatch, TooManyRequestsError),
)
async def exchange(
    body: CodeExchange,
    db: DatabaseDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    client_ip: ClientIP,
) -> TokenPair:
    """The `code` the callback put on your redirect URI and the PKCE `code_verifier` of the
    authorize step, once, within a minute: the usual token pair, a session like any other.
    A missing or wrong verifier is a 400 and spends the code."""
    return await service.exchange(
        db,
        limiter,
        settings,
        code=body.code,
        code_verifier=body.code_verifier,
        client_ip=client_ip,
    )


@router.get(
    "/users/me/identities",
    response_model=list[IdentityPublic],
    summary="List my linked provider accounts",
    responses={**error_responses(UnauthorizedError), **NOT_MODIFIED},
)
async def list_identities(user: CurrentUser, db: DatabaseDep) -> list[IdentityPublic]:
    return await service.list_identities(db, user_id=user.id)


@router.post(
    "/users/me/identities/{provider}",
    response_model=AuthorizationUrl,
    summary="Begin linking a provider account to mine",
    responses=error_responses(
        UnauthorizedError,
        SessionRequired,
        RecentSignInRequired,
        UnknownProvider,
        RedirectUriNotAllowed,
        CallbackUrlTooLong,
        CurrentPasswordRequired,
        WrongPassword,
        TooManyRequestsError,
        ServiceUnavailableError,
    ),
)
async def link_identity(
    provider: str,
    body: LinkRequest,
    user: SignedIn,
    request: Request,
    response: Response,
    db: DatabaseDep,
    oidc: OidcDep,
    settings: SettingsDep,
    passwords: PasswordHasherDep,
    limiter: RateLimiterDep,
    client_ip: ClientIP,
) -> AuthorizationUrl:
    """Send the browser to `authorization_url` (a navigation). Call this with the browser's
    cookies (`credentials: "include"`): the answer binds the attempt to the browser. Needs
    `current_password` when the account has one; without one, a sign-in in the last 10
    minutes (403 otherwise). The browser comes back to `redirect_uri` with
    `linked=<provider>` or `error=<code>`; the link is refused if this session ends or the
    password changes meanwhile."""
    browser = _browser_binding(request, settings)
    url = await service.begin_link(
        db,
        oidc,
        settings,
        passwords,
        limiter,
        client_ip=client_ip,
        user=user,
        current_password=body.current_password,
        provider=provider,
        redirect_uri=body.redirect_uri,
        callback_uri=_callback_uri(request, settings, provider),
        browser=browser,
    )
    _bind(response, request, settings, provider, browser)
    return AuthorizationUrl(authorization_url=url)


@router.delete(
    "/users/me/identities/{identity_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unlink a provider account",
    responses=error_responses(
        UnauthorizedError, SessionRequired, IdentityNotFound, LastSignInMethod
    ),
)
async def unlink_identity(identity_id: uuid.UUID, user: SignedIn, db: DatabaseDep) -> None:
    """409 when it is the account's only way to sign in (no password, no other identity)."""
    await service.unlink(db, user_id=user.id, identity_id=identity_id)
