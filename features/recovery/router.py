"""HTTP routes for password recovery and email verification (under /auth, like sign-in)."""

from fastapi import APIRouter, status

from core.errors import ServiceUnavailableError, TooManyRequestsError, error_responses
from core.http.deps import ClientIP, DatabaseDep, PasswordHasherDep, RateLimiterDep, SettingsDep
from features.recovery import service
from features.recovery.errors import InvalidAccountToken
from features.recovery.models import (
    Accepted,
    EmailRequest,
    EmailRestore,
    EmailVerification,
    PasswordReset,
)
from features.users.errors import EmailTaken

router = APIRouter(prefix="/auth", tags=["auth"])
mail_request_responses = error_responses(TooManyRequestsError, ServiceUnavailableError)


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
) -> Accepted:
    """Always the same answer, so it does not tell whether the address has an account."""
    await service.request_password_recovery(
        db, limiter, settings, email=body.email, client_ip=client_ip
    )
    return Accepted(message=service.ACCEPTED_MESSAGE)


@router.post(
    "/reset-password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with a reset link",
    responses=error_responses(InvalidAccountToken),
)
async def reset_password(
    body: PasswordReset, db: DatabaseDep, passwords: PasswordHasherDep
) -> None:
    """The link works once. Every token issued before (access and refresh) stops working."""
    await service.reset_password(db, passwords, data=body)


@router.post(
    "/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Confirm an email address",
    responses=error_responses(InvalidAccountToken),
)
async def verify_email(body: EmailVerification, db: DatabaseDep) -> None:
    """Marks the address the link was mailed to as verified."""
    await service.verify_email(db, token=body.token)


@router.post(
    "/restore-email",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Put back the previous email address",
    responses=error_responses(InvalidAccountToken, EmailTaken),
)
async def restore_email(body: EmailRestore, db: DatabaseDep) -> None:
    """With the link mailed to an account's previous address after an email change: the
    account gets that address back and every session ends. Then reset the password."""
    await service.restore_email(db, token=body.token)


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
) -> Accepted:
    """Always the same answer; a mail goes out only to an unverified account's address."""
    await service.request_verification(db, limiter, settings, email=body.email, client_ip=client_ip)
    return Accepted(message=service.ACCEPTED_MESSAGE)
