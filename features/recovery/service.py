"""Password recovery and email verification use cases.

The routes that ask for a mail only enqueue a job for the address, in one transaction: the
same insert, answer and timing whether or not an account uses it. The worker looks the
account up, stores the link and mails it (features/recovery/jobs.py), retrying until the mail
server takes it. Links are stored as their SHA-256, bound to the address they were mailed to,
and spent by one atomic UPDATE. Accounts change only through the users feature's service.
"""

import uuid

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.config import Settings
from core.data import audit
from core.data.clock import utc_now
from core.data.db import Database, changed_rows, transaction
from core.http.ratelimit import RateLimiter, address_key, parse_limit
from core.jobs import enqueue
from core.observability.masking import mask_address
from core.security import PasswordHasher, digest_token
from features.recovery import jobs
from features.recovery.errors import InvalidAccountToken
from features.recovery.models import AccountToken, AccountTokenPurpose, PasswordReset
from features.users import service as users_service
from features.users.models import User, normalize_email

ACCEPTED_MESSAGE = "If an account uses this address, a mail with a link is on its way."

# The audit events this feature records (core/data/audit.py). Following a link mailed to the
# account is the owner acting: actor and subject are the account.
PASSWORD_RESET = audit.event_type("recovery.password_reset", "A password was set with a reset link")
EMAIL_VERIFIED = audit.event_type("recovery.email_verified", "An address was confirmed by its link")
EMAIL_RESTORED = audit.event_type(
    "recovery.email_restored",
    "A previous address was put back by its link (masked in details); every session ended",
)


# --- reactions to other features (connected in features/registry.py) ---------------------


def send_verification(session: Session, user: User) -> None:
    """An account has an address nobody has confirmed (a sign-up, an email change): mail it
    a link, once this transaction commits; never if it rolls back."""
    enqueue(session, jobs.issue_verification, email=user.email, user_id=str(user.id))


def send_address_restore_link(session: Session, change: users_service.AddressChange) -> None:
    """An account left an address: mail that address a link that puts it back."""
    enqueue(
        session,
        jobs.issue_address_restore,
        user_id=str(change.user_id),
        previous_email=change.previous_email,
    )


def send_password_notice(session: Session, user_id: uuid.UUID) -> None:
    """An account's password was replaced: tell its address."""
    enqueue(session, jobs.send_password_notice, user_id=str(user_id))


# --- building blocks ---------------------------------------------------------------------


def _usable(session: Session, token: str, purpose: AccountTokenPurpose) -> AccountToken:
    """The stored link if it may still be spent; InvalidAccountToken otherwise."""
    stored = session.exec(
        select(AccountToken).where(
            AccountToken.token_hash == digest_token(token), AccountToken.purpose == purpose
        )
    ).first()
    if stored is None or not stored.usable():
        raise InvalidAccountToken
    user = session.get(User, stored.user_id)
    if user is None or not user.is_active:
        raise InvalidAccountToken
    # A link vouches for the address it was mailed to, and works only while the account
    # still has it; but for the link that puts a previous address back.
    if purpose is not AccountTokenPurpose.RESTORE and user.email != stored.email:
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


# --- units of work -----------------------------------------------------------------------


@transaction
def _enqueue_password_reset(session: Session, *, email: str) -> None:
    enqueue(session, jobs.issue_password_reset, email=email)
    session.commit()


@transaction
def _enqueue_verification(session: Session, *, email: str) -> None:
    enqueue(session, jobs.issue_verification, email=email)
    session.commit()


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
    audit.record(session, PASSWORD_RESET, actor_id=stored.user_id, subject_id=stored.user_id)
    session.commit()


@transaction
def verify_email(session: Session, *, token: str) -> None:
    """Spend a verification link and mark the address it was mailed to as verified."""
    stored = _usable(session, token, AccountTokenPurpose.VERIFY)
    _spend(session, stored)
    if users_service.mark_email_verified(session, stored.user_id, stored.email):
        audit.record(session, EMAIL_VERIFIED, actor_id=stored.user_id, subject_id=stored.user_id)
    session.commit()


@transaction
def restore_email(session: Session, *, token: str) -> None:
    """Spend a restore link: the account gets back the address the link was mailed to, marked
    verified, and every session ends (the change may have come from a stolen one)."""
    stored = _usable(session, token, AccountTokenPurpose.RESTORE)
    _spend(session, stored)
    if not users_service.restore_address(session, stored.user_id, stored.email):
        session.rollback()
        raise InvalidAccountToken
    audit.record(
        session,
        EMAIL_RESTORED,
        actor_id=stored.user_id,
        subject_id=stored.user_id,
        details={"email": mask_address(stored.email)},
    )
    session.commit()


# --- use cases called by the routes -------------------------------------------------------


async def _limit_mail_requests(
    limiter: RateLimiter, settings: Settings, namespace: str, email: str, client_ip: str
) -> None:
    limit = parse_limit(settings.RECOVERY_RATE_LIMIT)
    if limit is not None:
        await limiter.hit(limit, namespace, f"email:{email}", address_key(client_ip))


async def request_password_recovery(
    db: Database, limiter: RateLimiter, settings: Settings, *, email: str, client_ip: str
) -> None:
    email = normalize_email(email)
    await _limit_mail_requests(limiter, settings, "recovery", email, client_ip)
    await _enqueue_password_reset(db, email=email)


async def request_verification(
    db: Database, limiter: RateLimiter, settings: Settings, *, email: str, client_ip: str
) -> None:
    email = normalize_email(email)
    await _limit_mail_requests(limiter, settings, "verification", email, client_ip)
    await _enqueue_verification(db, email=email)


async def reset_password(db: Database, passwords: PasswordHasher, *, data: PasswordReset) -> None:
    await check_reset_token(db, token=data.token)
    hashed = await passwords.hash_async(data.new_password)
    await complete_reset(db, token=data.token, hashed_password=hashed)
