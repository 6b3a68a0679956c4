"""Password recovery and email verification use cases.

The routes that ask for a mail answer before anything is looked up: finding the account,
issuing the link and sending it happen after the response, so the answer and its timing are
the same whether or not the address has an account. Links are random, stored as their
SHA-256, bound to the address they were mailed to, and spent by one atomic UPDATE. Accounts
change only through the users feature's service.
"""

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.clock import as_utc, utc_now
from core.config import Settings
from core.db import Database, changed_rows, transaction
from core.mail import Mailer, mask_address
from core.ratelimit import RateLimiter, parse_limit
from core.security import PasswordHasher, digest_token, new_opaque_token
from features.recovery import mails
from features.recovery.errors import InvalidAccountToken
from features.recovery.models import AccountToken, AccountTokenPurpose, PasswordReset
from features.users import service as users_service
from features.users.models import User, normalize_email

logger = logging.getLogger("app.recovery")

ACCEPTED_MESSAGE = "If an account uses this address, a mail with a link is on its way."


def reset_lifetime(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.PASSWORD_RESET_EXPIRE_MINUTES)


def verify_lifetime(settings: Settings) -> timedelta:
    return timedelta(hours=settings.VERIFY_EMAIL_EXPIRE_HOURS)


# --- building blocks ---------------------------------------------------------------------


def _issue(session: Session, user: User, purpose: AccountTokenPurpose, lifetime: timedelta) -> str:
    token = new_opaque_token()
    session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=digest_token(token),
            email=user.email,
            token_version=user.token_version,
            expires_at=utc_now() + lifetime,
        )
    )
    session.commit()
    return token


def _usable(session: Session, token: str, purpose: AccountTokenPurpose) -> AccountToken:
    """The stored link if it may still be spent; InvalidAccountToken otherwise."""
    stored = session.exec(
        select(AccountToken).where(
            AccountToken.token_hash == digest_token(token), AccountToken.purpose == purpose
        )
    ).first()
    if stored is None or stored.used_at is not None or as_utc(stored.expires_at) <= utc_now():
        raise InvalidAccountToken
    user = session.get(User, stored.user_id)
    if user is None or not user.is_active or user.email != stored.email:
        raise InvalidAccountToken
    if purpose is AccountTokenPurpose.RESET and user.token_version != stored.token_version:
        raise InvalidAccountToken  # the password changed since the link was mailed
    return stored


def _spend(session: Session, stored: AccountToken) -> None:
    # Of two requests racing with one link, exactly one changes the row.
    spend = (
        update(AccountToken)
        .where(col(AccountToken.id) == stored.id, col(AccountToken.used_at).is_(None))
        .values(used_at=utc_now())
    )
    if changed_rows(session, spend) != 1:
        session.rollback()
        raise InvalidAccountToken


def issue_reset_token(session: Session, email: str, settings: Settings) -> tuple[str, str] | None:
    """(address, token) for an active account at `email`; None when there is none."""
    user = users_service.get_by_email(session, email)
    if user is None or not user.is_active:
        return None
    return user.email, _issue(session, user, AccountTokenPurpose.RESET, reset_lifetime(settings))


def issue_verify_token(
    session: Session, user_id: uuid.UUID, settings: Settings
) -> tuple[str, str] | None:
    """(address, token) when the account still has an unverified address; None otherwise."""
    user = session.get(User, user_id)
    if user is None or not user.is_active or user.is_verified:
        return None
    return user.email, _issue(session, user, AccountTokenPurpose.VERIFY, verify_lifetime(settings))


def issue_verify_token_by_email(
    session: Session, email: str, settings: Settings
) -> tuple[str, str] | None:
    user = users_service.get_by_email(session, email)
    return None if user is None else issue_verify_token(session, user.id, settings)


# --- units of work -----------------------------------------------------------------------


@transaction  # the primary: a link spent a moment ago must already be refused
def check_reset_token(session: Session, *, token: str) -> None:
    """Refuse a bad link before paying for bcrypt."""
    _usable(session, token, AccountTokenPurpose.RESET)


@transaction
def complete_reset(session: Session, *, token: str, hashed_password: str) -> None:
    """Spend the link and store the new password in one commit; every earlier token dies."""
    stored = _usable(session, token, AccountTokenPurpose.RESET)
    _spend(session, stored)
    # Following a link mailed to the current address proves the address, too.
    if not users_service.replace_password(
        session, stored.user_id, hashed_password, stored.token_version, mark_verified=True
    ):
        session.rollback()
        raise InvalidAccountToken
    session.commit()


@transaction
def verify_email(session: Session, *, token: str) -> None:
    """Spend a verification link and mark the address it was mailed to as verified."""
    stored = _usable(session, token, AccountTokenPurpose.VERIFY)
    _spend(session, stored)
    users_service.mark_email_verified(session, stored.user_id, stored.email)
    session.commit()


# --- use cases called by the routes -------------------------------------------------------


async def _limit_mail_requests(
    limiter: RateLimiter, settings: Settings, namespace: str, email: str, client_ip: str
) -> None:
    limit = parse_limit(settings.RECOVERY_RATE_LIMIT)
    if limit is not None:
        await limiter.hit(limit, namespace, f"email:{normalize_email(email)}", f"ip:{client_ip}")


async def request_password_recovery(
    limiter: RateLimiter, settings: Settings, *, email: str, client_ip: str
) -> None:
    await _limit_mail_requests(limiter, settings, "recovery", email, client_ip)


async def request_verification(
    limiter: RateLimiter, settings: Settings, *, email: str, client_ip: str
) -> None:
    await _limit_mail_requests(limiter, settings, "verification", email, client_ip)


async def reset_password(db: Database, passwords: PasswordHasher, *, data: PasswordReset) -> None:
    await check_reset_token(db, token=data.token)
    hashed = await passwords.hash_async(data.new_password)
    await complete_reset(db, token=data.token, hashed_password=hashed)


# --- background tasks: run after the response is sent, never raise -------------------------


def _link(settings: Settings, page: str, token: str) -> str:
    return f"{settings.FRONTEND_URL}/{page}?{urlencode({'token': token})}"


async def _issue_and_mail(
    db: Database,
    settings: Settings,
    address_for_log: str,
    issue: Callable[[Session], tuple[str, str] | None],
    compose: Callable[[str], mails.MailContent],
) -> None:
    try:
        issued = await db.run(issue)
        if issued is None:
            return
        recipient, token = issued
        content = compose(token)
        await Mailer.from_settings(settings).send(
            recipient=recipient, subject=content.subject, text=content.text, html=content.html
        )
    except Exception:
        # Nobody waits on this task any more: the log is the only place the error can go.
        logger.exception("account mail for %s failed", mask_address(address_for_log))


async def send_password_reset(db: Database, settings: Settings, email: str) -> None:
    await _issue_and_mail(
        db,
        settings,
        email,
        lambda session: issue_reset_token(session, email, settings),
        lambda token: mails.password_reset(
            settings.PROJECT_NAME,
            _link(settings, "reset-password", token),
            reset_lifetime(settings),
        ),
    )


def _verification_mail(settings: Settings, token: str) -> mails.MailContent:
    return mails.email_verification(
        settings.PROJECT_NAME, _link(settings, "verify-email", token), verify_lifetime(settings)
    )


async def send_verification(db: Database, settings: Settings, user: User) -> None:
    """After registration or an email change: a link for the account's current address."""
    await _issue_and_mail(
        db,
        settings,
        user.email,
        lambda session: issue_verify_token(session, user.id, settings),
        lambda token: _verification_mail(settings, token),
    )


async def resend_verification(db: Database, settings: Settings, email: str) -> None:
    await _issue_and_mail(
        db,
        settings,
        email,
        lambda session: issue_verify_token_by_email(session, email, settings),
        lambda token: _verification_mail(settings, token),
    )
