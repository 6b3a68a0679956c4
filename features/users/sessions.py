"""Where an account is signed in: sessions and the refresh tokens that renew them.

A session begins with a sign-in (a password at the token endpoint, or any other way a
feature signs someone in) and goes on through every refresh: each refresh token is spent as
it is used and its successor joins the same session. The access tokens a session issues name
it (`sid`), and the account a token sees is cached under the session's tag, so ending a
session, from the account's own list, by an admin, on sign-out or when a spent refresh token
comes back, refuses its refresh token and its access tokens at once, on every instance,
without a database read per request on a cache hit.

Building blocks for the features that sign people in and out (auth), and the use cases of the
sessions routes.
"""

import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.config import Settings
from core.data import audit
from core.data.clock import as_utc, utc_now
from core.data.db import changed_rows, locking, read_only, transaction
from core.data.invalidation import revoke_on_commit
from core.http.oauth2 import TokenPair
from core.security import create_access_token, digest_token, new_opaque_token
from features.users import authority
from features.users.errors import InvalidRefreshToken, SessionNotFound, UserNotFound
from features.users.models import (
    AccountSession,
    AuthenticatedUser,
    Authority,
    RefreshToken,
    SessionPublic,
    User,
)

# The audit events of a session's end (core/data/audit.py); its start is the sign-in's
# (auth.signed_in). Each names the session in its details.
SIGNED_OUT = audit.event_type("users.signed_out", "A session was ended by its refresh token")
REFRESH_REUSED = audit.event_type(
    "users.refresh_reused", "A spent refresh token was presented again: its session is ended"
)
SESSION_ENDED = audit.event_type(
    "users.session_ended", "A session was ended from the sessions list, by its owner or an admin"
)
OTHER_SESSIONS_ENDED = audit.event_type(
    "users.other_sessions_ended", "The owner ended every session but the current one"
)


def _request_origin() -> tuple[str | None, str | None]:
    """The user agent and client address of the request being served, as the HTTP edge saw
    them (core/data/audit.py, `request_origin`); none outside a request."""
    origin = audit.request_origin.get()
    return (None, None) if origin is None else (origin.user_agent, origin.client_ip)


def session_tag(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


def _tokens(
    session: Session, user: User, settings: Settings, signed_in: AccountSession
) -> TokenPair:
    """A refresh token stored (by its hash) in the session, and an access token naming it."""
    refresh_token = new_opaque_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=signed_in.id,
            token_hash=digest_token(refresh_token),
            token_version=user.token_version,
            expires_at=signed_in.expires_at,
        )
    )
    expires_in = timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    access_token = create_access_token(
        subject=str(user.id),
        token_version=user.token_version,
        session_id=str(signed_in.id),
        secret_key=settings.SECRET_KEY,
        expires_in=expires_in,
    )
    return TokenPair(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=int(expires_in.total_seconds()),
    )


def start(session: Session, user: User, settings: Settings) -> tuple[AccountSession, TokenPair]:
    """Sign `user` in: a new session and its first token pair. Does not commit: the sign-in
    records itself in the same transaction (auth.signed_in), then commits."""
    user_agent, client_ip = _request_origin()
    signed_in = AccountSession(
        user_id=user.id,
        token_version=user.token_version,
        expires_at=utc_now() + timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS),
        user_agent=user_agent,
        client_ip=client_ip,
    )
    session.add(signed_in)
    return signed_in, _tokens(session, user, settings, signed_in)


def _find(session: Session, refresh_token: str) -> RefreshToken | None:
    return session.exec(
        select(RefreshToken).where(RefreshToken.token_hash == digest_token(refresh_token))
    ).first()


def end(session: Session, session_id: uuid.UUID) -> bool:
    """End a session: its refresh tokens are refused, and its access tokens from this commit
    on (the cached account they see is revoked); False when it had already ended. Does not
    commit."""
    now = utc_now()
    ended = changed_rows(
        session,
        update(AccountSession)
        .where(col(AccountSession.id) == session_id, col(AccountSession.ended_at).is_(None))
        .values(ended_at=now),
    )
    session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == session_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    revoke_on_commit(session, session_tag(session_id))
    return ended == 1


def is_live(session: Session, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    """The session exists for this account and has not ended (the account's token version
    is checked apart, against the token's)."""
    found = session.exec(
        select(AccountSession.id).where(
            AccountSession.id == session_id,
            AccountSession.user_id == user_id,
            col(AccountSession.ended_at).is_(None),
        )
    ).first()
    return found is not None


# --- units of work the sign-in features call --------------------------------------------------


@transaction
def rotate(session: Session, *, refresh_token: str, settings: Settings) -> TokenPair:
    """Spend a refresh token and issue its successor in the same session; a spent one
    presented again ends the session (a stolen token is caught that way)."""
    stored = _find(session, refresh_token)
    if stored is None:
        raise InvalidRefreshToken
    if stored.revoked_at is not None:
        _replayed(session, stored)
        raise InvalidRefreshToken
    signed_in = session.get(AccountSession, stored.family_id)
    # Held until the commit: the account cannot be deleted before the new token is stored.
    user = session.exec(
        locking(session, select(User).where(col(User.id) == stored.user_id), "reference")
    ).first()
    if (
        (signed_in is not None and signed_in.ended_at is not None)
        or as_utc(stored.expires_at) <= utc_now()
        or user is None
        or not user.is_active
        or user.token_version != stored.token_version
    ):
        raise InvalidRefreshToken
    # Spend it atomically: of two requests racing with the same token, one wins and the
    # other is treated as a replay.
    spend = (
        update(RefreshToken)
        .where(col(RefreshToken.id) == stored.id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utc_now())
    )
    if changed_rows(session, spend) != 1:
        session.rollback()
        _replayed(session, stored)
        raise InvalidRefreshToken
    if signed_in is None:
        # Issued by code from before sessions (a rolling update): its family becomes one now.
        signed_in = AccountSession(
            id=stored.family_id,
            user_id=user.id,
            token_version=stored.token_version,
            created_at=stored.created_at,
            expires_at=stored.expires_at,
        )
    signed_in.last_used_at = utc_now()
    signed_in.expires_at = signed_in.last_used_at + timedelta(
        days=settings.REFRESH_TOKEN_EXPIRE_DAYS
    )
    signed_in.user_agent, signed_in.client_ip = _request_origin()
    session.add(signed_in)
    pair = _tokens(session, user, settings, signed_in)
    session.commit()
    return pair


def _replayed(session: Session, stored: RefreshToken) -> None:
    """A spent refresh token came back: whoever holds its successor (the owner or a thief)
    loses the session, and the log says so. Commits."""
    end(session, stored.family_id)
    audit.record(
        session,
        REFRESH_REUSED,
        actor_id=None,  # the owner or a thief: nobody can tell which
        subject_id=stored.user_id,
        details={"session_id": str(stored.family_id)},
    )
    session.commit()


@transaction
def sign_out(session: Session, *, refresh_token: str) -> None:
    """End the session a refresh token belongs to; unknown or spent tokens change nothing
    (and record nothing)."""
    stored = _find(session, refresh_token)
    if stored is not None:
        if end(session, stored.family_id):
            audit.record(
                session,
                SIGNED_OUT,
                actor_id=stored.user_id,
                subject_id=stored.user_id,
                details={"session_id": str(stored.family_id)},
            )
        session.commit()


# --- the sessions routes --------------------------------------------------------------------


def _listed(session: Session, user: User, current: uuid.UUID | None) -> list[SessionPublic]:
    live = session.exec(
        select(AccountSession)
        .where(
            AccountSession.user_id == user.id,
            AccountSession.token_version == user.token_version,
            col(AccountSession.ended_at).is_(None),
            col(AccountSession.expires_at) > utc_now(),
        )
        .order_by(col(AccountSession.last_used_at).desc())
    )
    return [SessionPublic(**row.model_dump(), current=row.id == current) for row in live]


def _account(session: Session, user_id: uuid.UUID, actor: Authority | None) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound
    if actor is not None:
        authority.ensure_covers_account(session, actor, user.id)
    return user


@read_only
def list_sessions(
    session: Session,
    *,
    user_id: uuid.UUID,
    current: uuid.UUID | None = None,
    actor: Authority | None = None,
) -> list[SessionPublic]:
    """The account's live sessions, latest used first. `actor`: an admin looking at someone
    else's, who must hold whatever the account holds."""
    return _listed(session, _account(session, user_id, actor), current)


@transaction
def end_session(
    session: Session,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    actor: AuthenticatedUser | None = None,
) -> None:
    """End one of the account's sessions; another account's, or one already ended, is a 404.
    `actor`: an admin ending someone else's; None: the owner."""
    user = _account(session, user_id, actor)
    owned = session.get(AccountSession, session_id)
    if owned is None or owned.user_id != user.id or not end(session, session_id):
        raise SessionNotFound
    audit.record(
        session,
        SESSION_ENDED,
        actor_id=user.id if actor is None else actor.id,
        subject_id=user.id,
        details={"session_id": str(session_id)},
    )
    session.commit()


@transaction
def end_other_sessions(session: Session, *, user_id: uuid.UUID, current: uuid.UUID | None) -> None:
    """Every session of the account but the caller's own (`current`) ends."""
    live = session.exec(
        select(AccountSession.id).where(
            AccountSession.user_id == user_id, col(AccountSession.ended_at).is_(None)
        )
    )
    ended = [found for found in live if found != current]
    for session_id in ended:
        end(session, session_id)
    if ended:
        audit.record(
            session,
            OTHER_SESSIONS_ENDED,
            actor_id=user_id,
            subject_id=user_id,
            details={"kept_session_id": str(current) if current else None, "ended": len(ended)},
        )
    session.commit()
