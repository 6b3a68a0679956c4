"""Users use cases: plain functions, session first, domain errors out, one commit each.

The sync functions run inside `Database.run` (a worker thread with its own session). The
async ones orchestrate bcrypt (on its own bounded threads) and database work, so a request
never holds a connection while a password is being hashed.
"""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.config import Settings
from core.db import Database
from core.row_counts import TOTAL_LABEL, row_count, row_count_column
from core.security import PasswordHasher
from features.users.errors import (
    EmailTaken,
    InvalidAccessToken,
    LastSuperuser,
    UserNotFound,
    WrongPassword,
)
from features.users.models import (
    LIST_LIMIT_MAX,
    PasswordChange,
    User,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
    UserUpdateMe,
    normalize_email,
    utc_now,
)

# Features that react to a changed address (auth mails a verification link) register here,
# so users never imports them. The users router runs each one after its response is sent.
EmailChangedListener = Callable[[Database, Settings, User], Awaitable[None]]
email_changed_listeners: list[EmailChangedListener] = []


def on_email_changed(listener: EmailChangedListener) -> None:
    if listener not in email_changed_listeners:
        email_changed_listeners.append(listener)


# --- reads -------------------------------------------------------------------------------


def get(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound
    return user


def get_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == normalize_email(email))).first()


_USERS = User.__table__  # type: ignore[attr-defined]


# Built once: a statement made per request costs its construction and its cache key.
_USER_BY_ID = select(_USERS).where(_USERS.c.id == bindparam("user_id"))


def get_authenticated(session: Session, user_id: uuid.UUID, token_version: int) -> User:
    """The user an access token speaks for, if the token is still good for them.

    Runs on every authenticated request, so it reads one row with a plain select and builds
    a detached `User` from it without the ORM's identity-map work (a third of its CPU).
    Callers read it; to change the account they load it again in their own session.
    """
    row = session.execute(_USER_BY_ID, {"user_id": user_id}).mappings().first()
    if row is None or not row["is_active"] or row["token_version"] != token_version:
        raise InvalidAccessToken
    # model_validate, not model_construct: a constructed table model skips the ORM's
    # instance state, and its attributes then read as missing.
    return User.model_validate(row)


# The public columns only: a page of 100 rows as plain tuples, validated once as a whole,
# costs a fraction of building 100 ORM objects and validating each of them. The statement is
# run on the session's connection, which skips the ORM's result machinery as well. Each row
# also carries the table's total (core/row_counts.py), which the schema then ignores.
_PUBLIC_COLUMNS = tuple(User.__table__.c[name] for name in UserPublic.model_fields)  # type: ignore[attr-defined]
_PAGE_COLUMNS = (*_PUBLIC_COLUMNS, row_count_column("users"))
_PAGE = (
    select(*_PAGE_COLUMNS)
    .order_by(col(User.created_at), col(User.id))
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)


def list_users(session: Session, offset: int, limit: int) -> UsersPublic:
    limit = min(limit, LIST_LIMIT_MAX)
    page = session.connection().execute(_PAGE, {"offset": offset, "limit": limit})
    rows = page.mappings().all()
    # Past the last page no row brings the total along, so it is read on its own.
    total = rows[0][TOTAL_LABEL] if rows else row_count(session, "users")
    return UsersPublic.model_validate(
        {"items": rows, "total": total, "offset": offset, "limit": limit}
    )


# --- writes ------------------------------------------------------------------------------


def _commit_or_email_taken(session: Session) -> None:
    """Commit; the unique index on email is the arbiter when two requests race for one."""
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise EmailTaken from error


def create(session: Session, data: UserCreate, hashed_password: str) -> User:
    user = User(
        name=data.name,
        email=data.email,
        hashed_password=hashed_password,
        is_active=data.is_active,
        is_superuser=data.is_superuser,
    )
    session.add(user)
    _commit_or_email_taken(session)
    return user


def _ensure_not_last_superuser(session: Session, user: User) -> None:
    if not (user.is_superuser and user.is_active):
        return
    others = session.exec(
        select(func.count())
        .select_from(User)
        .where(User.is_superuser, User.is_active, User.id != user.id)
    ).one()
    if others == 0:
        raise LastSuperuser


class UpdatedUser(NamedTuple):
    user: User
    email_changed: bool


def update_user(
    session: Session,
    user_id: uuid.UUID,
    changes: UserUpdateMe | UserUpdate,
    hashed_password: str | None = None,
) -> UpdatedUser:
    """Apply only the fields the schema allows and the caller sent."""
    user = get(session, user_id)
    values: dict[str, Any] = changes.model_dump(exclude_unset=True, exclude={"password"})
    values = {key: value for key, value in values.items() if value is not None}
    demoted = values.get("is_superuser") is False or values.get("is_active") is False
    if demoted:
        _ensure_not_last_superuser(session, user)
    if values.get("is_active") is False and user.is_active:
        # A deactivated account's tokens die with it, not just until it is reactivated.
        user.token_version += 1
    email_changed = values.get("email", user.email) != user.email
    if email_changed:
        # Proof of the old address says nothing about the new one.
        user.is_verified = False
    for key, value in values.items():
        setattr(user, key, value)
    if hashed_password is not None:
        user.hashed_password = hashed_password
        user.token_version += 1
    user.updated_at = utc_now()
    session.add(user)
    _commit_or_email_taken(session)
    return UpdatedUser(user, email_changed)


def replace_password(
    session: Session,
    user_id: uuid.UUID,
    hashed_password: str,
    expected_version: int,
    *,
    mark_verified: bool = False,
) -> bool:
    """Store a new hash and bump the token version, so every token issued before dies;
    False when the version moved meanwhile. Does not commit: the caller's use case does.

    The version check makes two concurrent changes safe: only the first one wins.
    """
    values: dict[str, Any] = {
        "hashed_password": hashed_password,
        "token_version": User.token_version + 1,
        "updated_at": utc_now(),
    }
    if mark_verified:
        values["is_verified"] = True
    result = session.execute(
        update(User)
        .where(col(User.id) == user_id, col(User.token_version) == expected_version)
        .values(**values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def set_password(
    session: Session, user_id: uuid.UUID, hashed_password: str, expected_version: int
) -> None:
    """Store a new hash and kill every token issued before it."""
    if not replace_password(session, user_id, hashed_password, expected_version):
        session.rollback()
        raise InvalidAccessToken
    session.commit()


def delete(session: Session, user_id: uuid.UUID) -> None:
    user = get(session, user_id)
    _ensure_not_last_superuser(session, user)
    session.delete(user)
    session.commit()


def ensure_first_superuser(session: Session, email: str, hashed_password: str) -> bool:
    """Create the first superuser unless the address is taken; True when created.

    An existing account is left exactly as it is, password and role included: promoting it
    would hand admin rights to whoever registered that address first.
    """
    if get_by_email(session, email) is not None:
        return False
    session.add(
        User(
            name="Admin",
            email=normalize_email(email),
            hashed_password=hashed_password,
            is_superuser=True,
            # Whoever deploys chose this address; nobody is waiting to click a link.
            is_verified=True,
        )
    )
    try:
        session.commit()
    except IntegrityError:  # created by a concurrent run a moment ago
        session.rollback()
        return False
    return True


# --- use cases that hash passwords ---------------------------------------------------------


async def create_with_password(db: Database, hasher: PasswordHasher, data: UserCreate) -> User:
    hashed = await hasher.hash_async(data.password)
    return await db.run(create, data, hashed)


async def update_with_password(
    db: Database, hasher: PasswordHasher, user_id: uuid.UUID, changes: UserUpdate
) -> UpdatedUser:
    hashed = await hasher.hash_async(changes.password) if changes.password else None
    return await db.run(update_user, user_id, changes, hashed)


async def change_own_password(
    db: Database, hasher: PasswordHasher, user: User, change: PasswordChange
) -> None:
    if not await hasher.verify_async(change.current_password, user.hashed_password):
        raise WrongPassword
    hashed = await hasher.hash_async(change.new_password)
    await db.run(set_password, user.id, hashed, user.token_version)
