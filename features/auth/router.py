"""HTTP routes for auth: register, login (OAuth2 password flow), refresh, logout, password
recovery and email verification."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, FastAPI, Form, status

from core import mail
from core.deps import ClientIP, DatabaseDep, PasswordHasherDep, RateLimiterDep, SettingsDep
from core.errors import ServiceUnavailableError, TooManyRequestsError, error_responses
from core.oauth2 import LoginForm
from features.auth import recovery, service
from features.auth.errors import InvalidAccountToken, InvalidCredentials, InvalidRefreshToken
from features.auth.models import (
    Accepted,
    EmailRequest,
    EmailVerification,
    PasswordReset,
    RefreshRequest,
    TokenPair,
)
from features.users import service as users_service
from features.users.errors import EmailTaken
from features.users.models import UserPublic, UserRegister


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    mail.warn_when_unconfigured(app.state.settings)
    yield


router = APIRouter(prefix="/auth", tags=["auth"], lifespan=lifespan)
# A changed address (PATCH /users/me, /users/{id}) gets its verification link from here.
users_service.on_email_changed(recovery.send_verification)
mail_request_responses = error_responses(TooManyRequestsError, ServiceUnavailableError)


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
    hasher: PasswordHasherDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    client_ip: ClientIP,
    tasks: BackgroundTasks,
) -> UserPublic:
    """Name, email and a password of 8 to 72 bytes. The email is stored lower-cased.
    A mail with a link to confirm the address follows."""
    user = await service.register(db, hasher, limiter, settings, data=data, client_ip=client_ip)
    tasks.add_task(recovery.send_verification, db, settings, user)
    return UserPublic.model_validate(user)


@router.post(
    "/login",
    response_model=TokenPair,
    summary="Log in with email and password",
    responses=error_responses(InvalidCredentials, TooManyRequestsError, ServiceUnavailableError),
)
async def login(
    form: Annotated[LoginForm, Form()],
    db: DatabaseDep,
    hasher: PasswordHasherDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    client_ip: ClientIP,
) -> TokenPair:
    """OAuth2 password flow: `username` is the email. Returns an access and a refresh token."""
    return await service.login(
        db,
        hasher,
        limiter,
        settings,
        email=form.username,
        password=form.password,
        client_ip=client_ip,
    )


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Trade a refresh token for a new pair",
    responses=error_responses(InvalidRefreshToken),
)
async def refresh(body: RefreshRequest, db: DatabaseDep, settings: SettingsDep) -> TokenPair:
    """The presented token is spent; presenting it again ends the whole session."""
    return await db.run(service.rotate, body.refresh_token, settings)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End a session",
)
async def logout(body: RefreshRequest, db: DatabaseDep) -> None:
    """Revokes the session's refresh tokens. Unknown or already revoked tokens also get 204."""
    await db.run(service.revoke, body.refresh_token)


@router.post(
    "/password-recovery",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Mail a password reset link",
    responses=mail_request_responses,
)
async def request_password_recovery(
    body: EmailRequest,
    db: DatabaseDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    client_ip: ClientIP,
    tasks: BackgroundTasks,
) -> Accepted:
    """Always the same answer, so it does not tell whether the address has an account."""
    await recovery.limit_mail_requests(limiter, settings, "recovery", body.email, client_ip)
    tasks.add_task(recovery.send_password_reset, db, settings, body.email)
    return Accepted(message=recovery.ACCEPTED_MESSAGE)


@router.post(
    "/reset-password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with a reset link",
    responses=error_responses(InvalidAccountToken),
)
async def reset_password(body: PasswordReset, db: DatabaseDep, hasher: PasswordHasherDep) -> None:
    """The link works once. Every token issued before (access and refresh) stops working."""
    await recovery.reset_password(db, hasher, body)


@router.post(
    "/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Confirm an email address",
    responses=error_responses(InvalidAccountToken),
)
async def verify_email(body: EmailVerification, db: DatabaseDep) -> None:
    """Marks the address the link was mailed to as verified."""
    await db.run(recovery.verify_email, body.token)


@router.post(
    "/request-verification",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Mail a new email confirmation link",
    responses=mail_request_responses,
)
async def request_verification(
    body: EmailRequest,
    db: DatabaseDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    client_ip: ClientIP,
    tasks: BackgroundTasks,
) -> Accepted:
    """Always the same answer; a mail goes out only to an unverified account's address."""
    await recovery.limit_mail_requests(limiter, settings, "verification", body.email, client_ip)
    tasks.add_task(recovery.resend_verification, db, settings, body.email)
    return Accepted(message=recovery.ACCEPTED_MESSAGE)
