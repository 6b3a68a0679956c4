"""The recovery feature's background jobs: look an account up, issue its link, mail it.

A link is mailed in two jobs. The first (`issue_*`) finds the account and, in one transaction,
stores the link and enqueues the second (`send_account_link`), which composes and sends the
mail and is retried until the mail server takes it. The mail job carries only the link's id:
the secret in the link is derived from that id and SECRET_KEY (`link_secret`), so the queue
never holds it, the database holds only its SHA-256, and every retry mails the same link.

At least once: a worker that dies after a job's commit but before the queue records it runs
the job again. An `issue_*` job run twice stores two links and mails both: two verification
links each work once until they expire; of two reset links, the first one used moves the
account's token version and so ends the other. A `send_account_link` run twice mails the same
link twice.
"""

import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from sqlmodel import Session

from core import jobs
from core.config import Settings
from core.data.clock import utc_now
from core.jobs.mail import Mailer
from core.security import digest_token
from features.recovery import mails
from features.recovery.models import AccountToken, AccountTokenPurpose
from features.users import service as users_service
from features.users.models import User

logger = logging.getLogger("app.recovery")


@dataclass(frozen=True)
class _LinkKind:
    lifetime: Callable[[Settings], timedelta]
    page: str  # the frontend page the link opens
    compose: Callable[[str, str, timedelta], mails.MailContent]


_LINK_KINDS = {
    AccountTokenPurpose.RESET: _LinkKind(
        lambda settings: timedelta(minutes=settings.PASSWORD_RESET_EXPIRE_MINUTES),
        "reset-password",
        mails.password_reset,
    ),
    AccountTokenPurpose.VERIFY: _LinkKind(
        lambda settings: timedelta(hours=settings.VERIFY_EMAIL_EXPIRE_HOURS),
        "verify-email",
        mails.email_verification,
    ),
    AccountTokenPurpose.RESTORE: _LinkKind(
        lambda settings: timedelta(days=settings.EMAIL_RESTORE_EXPIRE_DAYS),
        "restore-email",
        mails.address_changed,
    ),
}


def link_secret(secret_key: str, token_id: uuid.UUID) -> str:
    """The secret a link carries: 256 bits nobody can compute without SECRET_KEY (through a
    key of its own, derived from it, so nothing else signed with SECRET_KEY is reused)."""
    link_key = hmac.new(secret_key.encode(), b"account-links", hashlib.sha256).digest()
    mac = hmac.new(link_key, token_id.bytes, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def _issue(
    session: Session,
    settings: Settings,
    user: User,
    purpose: AccountTokenPurpose,
    email: str | None = None,
) -> None:
    """Store a link for `email` (the account's current address by default) and enqueue its
    mail; the caller commits both together. `user` was read with lock="reference", so the
    account cannot be deleted before the link is stored: a job for an account deleted a
    moment ago finds no account and skips, instead of failing on the link's foreign key."""
    lifetime = _LINK_KINDS[purpose].lifetime(settings)
    token_id = uuid.uuid4()
    session.add(
        AccountToken(
            id=token_id,
            user_id=user.id,
            purpose=purpose,
            token_hash=digest_token(link_secret(settings.SECRET_KEY, token_id)),
            email=email or user.email,
            token_version=user.token_version,
            expires_at=utc_now() + lifetime,
        )
    )
    jobs.enqueue(session, send_account_link, token_id=str(token_id))


@jobs.job
def issue_password_reset(context: jobs.JobContext, *, email: str) -> None:
    """A reset link for an active account at `email`; nothing for any other address."""
    with context.database.session() as session:
        user = users_service.get_by_email(session, email, lock="reference")
        if user is None or not user.is_active:
            return
        _issue(session, context.settings, user, AccountTokenPurpose.RESET)
        session.commit()


@jobs.job
def issue_verification(context: jobs.JobContext, *, email: str, user_id: str | None = None) -> None:
    """A confirmation link, when the account at `email` (the one with `user_id`, if given)
    is active and has not confirmed that address."""
    with context.database.session() as session:
        user = (
            users_service.find(session, uuid.UUID(user_id), lock="reference")
            if user_id
            else users_service.get_by_email(session, email, lock="reference")
        )
        if user is None or user.email != email or not user.is_active or user.is_verified:
            return
        _issue(session, context.settings, user, AccountTokenPurpose.VERIFY)
        session.commit()


@jobs.job
def issue_address_restore(context: jobs.JobContext, *, user_id: str, previous_email: str) -> None:
    """A link to the address an account just left, that puts it back; nothing if the account
    is gone."""
    with context.database.session() as session:
        user = users_service.find(session, uuid.UUID(user_id), lock="reference")
        if user is None:
            return
        _issue(session, context.settings, user, AccountTokenPurpose.RESTORE, previous_email)
        session.commit()


@jobs.job
def send_password_notice(context: jobs.JobContext, *, user_id: str) -> None:
    """Tell an account's address that its password changed. Raises when the mail server does
    not take it, so the queue tries again later."""
    settings = context.settings
    with context.database.session() as session:
        user = session.get(User, uuid.UUID(user_id))
        if user is None:
            return
        recipient = user.email
    content = mails.password_changed(settings.PROJECT_NAME)
    Mailer.from_settings(settings).deliver(
        recipient=recipient, subject=content.subject, text=content.text, html=content.html
    )


@jobs.job
def send_account_link(context: jobs.JobContext, *, token_id: str) -> None:
    """Mail a stored link, unless it can no longer be used. Raises when the mail server does
    not take it, so the queue tries again later."""
    settings = context.settings
    with context.database.session() as session:
        token = session.get(AccountToken, uuid.UUID(token_id))
        if token is None or not token.usable():
            # Spent, expired (retries can outlast a short link) or gone with its account.
            logger.info("link %s not mailed: it can no longer be used", token_id)
            return
        recipient, kind = token.email, _LINK_KINDS[AccountTokenPurpose(token.purpose)]
    secret = link_secret(settings.SECRET_KEY, token.id)
    content = kind.compose(
        settings.PROJECT_NAME, _link(settings, kind.page, secret), kind.lifetime(settings)
    )
    Mailer.from_settings(settings).deliver(
        recipient=recipient, subject=content.subject, text=content.text, html=content.html
    )


def _link(settings: Settings, page: str, secret: str) -> str:
    return f"{settings.FRONTEND_URL}/{page}?{urlencode({'token': secret})}"
