"""HTTP routes for auth: register, login (OAuth2 password flow), refresh, logout."""

from typing import Annotated

from fastapi import APIRouter, Form, status

from core.errors import ServiceUnavailableError, TooManyRequestsError, error_responses
from core.http.deps import (
    ClientIP,
    DatabaseDep,
    PasswordHasherDep,
    RateLimiterDep,
    SettingsDep,
)
from core.http.oauth2 import LoginForm, TokenEndpointRoute, TokenPair, token_endpoint_responses
from features.auth import service
from features.auth.errors import InvalidCredentials
from features.auth.models import RefreshRequest
from features.users import sessions
from features.users.errors import EmailTaken, InvalidRefreshToken
from features.users.models import UserPublic, UserRegister

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register an account",
    responses=error_responses(EmailTaken, TooManyRequestsError),
)
async def register(
    data: UserRegister,
    db: DatabaseDep,
    passwords: PasswordHasherDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    client_ip: ClientIP,
) -> UserPublic:
    """Name, email and a password of 8 characters or more, at most 72 bytes in UTF-8. The
    email is stored lower-cased. A mail with a link to confirm the address follows."""
    return await service.register(db, passwords, limiter, settings, data=data, client_ip=client_ip)


async def login(
    form: Annotated[LoginForm, Form()],
    db: DatabaseDep,
    passwords: PasswordHasherDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    client_ip: ClientIP,
) -> TokenPair:
    """The OAuth2 token endpoint. The password grant (`username` is the email) signs in; the
    refresh grant (`grant_type=refresh_token`, RFC 6749 section 6) trades a refresh token for
    a new pair exactly as `POST /auth/refresh` does, spent token and replay detection
    included. Errors carry RFC 6749's `error` (`invalid_grant`: wrong credentials or a refresh
    token that is spent, expired or revoked) beside `detail`."""
    if form.grant_type == "refresh_token" and form.refresh_token is not None:
        return await sessions.rotate(db, refresh_token=form.refresh_token, settings=settings)
    return await service.login(
        db,
        passwords,
        limiter,
        settings,
        email=form.username or "",  # the form's validator sent neither grant here without it
        password=form.password or "",
        client_ip=client_ip,
    )


# Added here, not with a decorator, for the route class: its errors are RFC 6749's too.
router.add_api_route(
    "/login",
    login,
    methods=["POST"],
    response_model=TokenPair,
    summary="Sign in, or refresh, at the OAuth2 token endpoint",
    responses=token_endpoint_responses(
        InvalidCredentials, InvalidRefreshToken, TooManyRequestsError, ServiceUnavailableError
    ),
    route_class_override=TokenEndpointRoute,
)


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Trade a refresh token for a new pair",
    responses=error_responses(InvalidRefreshToken),
)
async def refresh(body: RefreshRequest, db: DatabaseDep, settings: SettingsDep) -> TokenPair:
    """The presented token is spent; presenting it again ends the whole session."""
    return await sessions.rotate(db, refresh_token=body.refresh_token, settings=settings)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End a session",
)
async def logout(body: RefreshRequest, db: DatabaseDep) -> None:
    """Ends the session: its refresh token and its access tokens are refused from now on.
    Unknown or already revoked tokens also get 204."""
    await sessions.sign_out(db, refresh_token=body.refresh_token)
