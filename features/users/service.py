"""Users use cases: plain functions taking a Session first, domain errors out, one commit each.

Routes call the `@transaction` and `@read_only` functions as `await service.fn(db, ...)` (see
core/data/db.py) and the async ones, which hash a password on the hasher's threads before they
hand the result to a unit of work. The undecorated functions are building blocks that other
units of work, other features and manage.py call with a session of their own.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.cache import Cache
from core.data import audit
from core.data.clock import utc_now
from core.data.db import Database, RowLock, changed_rows, locking, read_only, transaction
from core.data.hooks import Hook
from core.data.invalidation import invalidate_on_commit
from core.data.pagination import fetch_page
from core.observability.masking import mask_address
from core.security import PasswordHasher
from features.users import authority, sessions
from features.users.errors import (
    InvalidAccessToken,
    NoPasswordSet,
    UserNotFound,
    WrongPassword,
)
from features.users.models import (
    ADMIN_ROLE,
    MEMBER_ROLE,
    AuthenticatedUser,
    Authority,
    PasswordChange,
    User,
    UserColumns,
    UserCreate,
    UserPageRequest,
    UserPublic,
    UserRole,
    UsersPublic,
    UserUpdate,
    UserUpdateMe,
    normalize_email,
)

# The audit events this feature records (core/data/audit.py), in the transaction of the change.
# The actor is whoever acted: the account itself for self-service, an admin, or none (a
# command); the subject is the account.
ACCOUNT_CREATED = audit.event_type(
    "users.created",
    "An account was created: by sign-up (actor is the account), an admin or a command",
)
ACCOUNT_UPDATED = audit.event_type(
    "users.updated",
    "An account's fields were changed (which ones, in details), by its owner or an admin",
)
ACCOUNT_DELETED = audit.event_type(
    "users.deleted", "An account was deleted, by its owner or an admin"
)
PASSWORD_CHANGED = audit.event_type("users.password_changed", "The owner changed the password")
EMAIL_CHANGED = audit.event_type(
    "users.email_changed", "The owner changed the email (both addresses masked in details)"
)

# Hooks fire inside the transaction that made the change; features/registry.py connects the
# reactions (recovery mails), which commit or roll back with it.

# An account now has an address nobody has confirmed (a sign-up, an email change): recovery
# mails it a confirmation link.
new_address: Hook[User] = Hook()


@dataclass(frozen=True, slots=True)
class AddressChange:
    user_id: uuid.UUID
    previous_email: str


# An account's address was replaced: the previous address hears of it (recovery mails it a
# link that puts it back and ends every session), so a stolen session cannot quietly move
# the account away from its owner.
address_replaced: Hook[AddressChange] = Hook()
# An account's password was replaced (changed, reset, or set by an admin): its address hears
# of it. The subject is the account's id.
password_replaced: Hook[uuid.UUID] = Hook()


# --- building blocks ---------------------------------------------------------------------


def _read(session: Session, condition: Any, lock: RowLock | None) -> User | None:
    statement = select(User).where(condition)
    return session.exec(statement if lock is None else locking(session, statement, lock)).first()


def get_by_email(session: Session, email: str, *, lock: RowLock | None = None) -> User | None:
    return _read(session, col(User.email) == normalize_email(email), lock)


def find(session: Session, user_id: uuid.UUID, *, lock: RowLock | None = None) -> User | None:
    """The account, or None when it does not exist (or no longer does)."""
    if lock is None:
        return session.get(User, user_id)
    return _read(session, col(User.id) == user_id, lock)


def get(session: Session, user_id: uuid.UUID, *, lock: RowLock | None = None) -> User:
    user = find(session, user_id, lock=lock)
    if user is None:
        raise UserNotFound
    return user


def add(
    session: Session, data: UserCreate, hashed_password: str, *, is_verified: bool = False
) -> User:
    """Add an account, holding `member` (and `admin` when `data.is_superuser`), to the
    session's transaction; the caller commits."""
    user = User(
        name=data.name,
        email=data.email,
        hashed_password=hashed_password,
        is_active=data.is_active,
        is_superuser=data.is_superuser,
        is_verified=is_verified,
    )
    return _added(session, user)


def add_without_password(session: Session, *, name: str, email: str) -> User:
    """Add a `member` account whose address someone else vouched for (an OpenID Connect
    provider), with no password: password sign-in refuses it until its owner sets one
    through password recovery. The caller commits."""
    return _added(
        session,
        User(name=name, email=normalize_email(email), hashed_password=None, is_verified=True),
    )


def _added(session: Session, user: User) -> User:
    # A taken address is EmailTaken, raised by the unit of work whenever the insert is flushed.
    session.add(user)
    granted = [MEMBER_ROLE, ADMIN_ROLE] if user.is_superuser else [MEMBER_ROLE]
    session.add_all(
        UserRole(user_id=user.id, role_id=role.id)
        for role in authority.roles_named(session, granted)
    )
    # A new account: nothing can have cached it, only the lists change.
    invalidate_on_commit(session, authority.USERS_TAG)
    return user


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
    statement = (
        update(User)
        .where(col(User.id) == user_id, col(User.token_version) == expected_version)
        .values(**values)
    )
    authority.account_changed(session, user_id, revoking=True)
    if changed_rows(session, statement) != 1:
        return False
    password_replaced.fire(session, user_id)
    return True


def restore_address(session: Session, user_id: uuid.UUID, email: str) -> bool:
    """Put back an address the account had, proven by a link mailed to it, and end every
    session (the change may have come from a stolen one); False when the account is gone.
    A taken address is EmailTaken. Does not commit."""
    user = find(session, user_id, lock="change")
    if user is None:
        return False
    user.email = email
    user.is_verified = True
    user.token_version += 1
    user.updated_at = utc_now()
    session.add(user)
    authority.account_changed(session, user_id, revoking=True)
    return True


def mark_email_verified(session: Session, user_id: uuid.UUID, email: str) -> bool:
    """The owner proved they read mail at `email`; nothing changes if the account has moved
    to another address since (False). Does not commit."""
    verified = changed_rows(
        session,
        update(User)
        .where(col(User.id) == user_id, col(User.email) == email)
        .values(is_verified=True, updated_at=utc_now()),
    )
    authority.account_changed(session, user_id, revoking=False)
    return verified == 1


def ensure_first_superuser(session: Session, email: str, hashed_password: str) -> bool:
    """Create the first superuser unless the address is taken; True when created.

    An existing account is left exactly as it is, password and role included: promoting it
    would hand admin rights to whoever registered that address first.
    """
    if get_by_email(session, email) is not None:
        return False
    first = UserCreate(
        name="Admin", email=normalize_email(email), password="x" * 8, is_superuser=True
    )
    # Whoever deploys chose this address; nobody is waiting to click a link.
    record_created(session, add(session, first, hashed_password, is_verified=True), None)
    try:
        session.commit()
    except IntegrityError:  # created by a concurrent run a moment ago
        session.rollback()
        return False
    return True


def _apply_changes(
    session: Session,
    user_id: uuid.UUID,
    changes: UserUpdateMe | UserUpdate,
    hashed_password: str | None,
    actor: AuthenticatedUser | None = None,
) -> UserPublic:
    """Apply only the fields the schema allows and the caller sent, record what changed, and
    commit. `actor`: an admin changing someone's account, who must hold whatever that account
    holds; None: the owner."""
    values: dict[str, Any] = changes.model_dump(
        exclude_unset=True, exclude={"password", "current_password"}
    )
    values = {key: value for key, value in values.items() if value is not None}
    if "is_active" in values or "is_superuser" in values:
        with authority.changing_authority(session):
            user, changed = _change(session, user_id, values, hashed_password, actor)
    else:
        user, changed = _change(session, user_id, values, hashed_password, actor)
    if changed:
        by_owner_to_email = actor is None and "email" in changed
        audit.record(
            session,
            EMAIL_CHANGED if by_owner_to_email else ACCOUNT_UPDATED,
            actor_id=user_id if actor is None else actor.id,
            subject_id=user_id,
            details={
                "fields": sorted(changed),
                **{field: shown for field, shown in changed.items() if shown is not None},
            },
        )
    shown = authority.public(session, user)
    session.commit()
    return shown


def _change(
    session: Session,
    user_id: uuid.UUID,
    values: dict[str, Any],
    hashed_password: str | None,
    actor: Authority | None,
) -> tuple[User, dict[str, Any]]:
    """The account changed, and what changed, as the audit log shows it: the name and the
    password by name only (None), the email masked, the flags with their old and new
    values."""
    user = get(session, user_id, lock="change")
    changed: dict[str, Any] = {}
    if actor is not None:
        authority.ensure_covers(
            actor, authority.authority_of(session, [user.id])[user.id].permissions
        )
    admin = values.pop("is_superuser", None)
    if admin is not None:
        if actor is not None:
            authority.ensure_covers(
                actor, authority.granted_by(session, authority.roles_named(session, [ADMIN_ROLE]))
            )
        was_admin = ADMIN_ROLE in authority.authority_of(session, [user.id])[user.id].roles
        if admin != was_admin:
            changed["is_superuser"] = {"old": was_admin, "new": admin}
        authority._set_admin(session, user, admin)
    previous_email = user.email
    if "is_active" in values and values["is_active"] != user.is_active:
        changed["is_active"] = {"old": user.is_active, "new": values["is_active"]}
    if "name" in values and values["name"] != user.name:
        changed["name"] = None
    if values.get("is_active") is False and user.is_active:
        # A deactivated account's tokens die with it, not just until it is reactivated.
        user.token_version += 1
    email_changed = values.get("email", user.email) != user.email
    if email_changed:
        # Proof of the old address says nothing about the new one.
        user.is_verified = False
        changed["email"] = {"old": mask_address(user.email), "new": mask_address(values["email"])}
    for key, value in values.items():
        setattr(user, key, value)
    if hashed_password is not None:
        user.hashed_password = hashed_password
        user.token_version += 1
        changed["password"] = None
    user.updated_at = utc_now()
    session.add(user)
    revoking = hashed_password is not None or "is_active" in values
    authority.account_changed(session, user.id, revoking=revoking)
    if email_changed:
        # The reactions' own queries flush the new address: if another account took it a
        # moment ago, the unit of work turns the violation into EmailTaken (core/data/db.py).
        new_address.fire(session, user)
        address_replaced.fire(session, AddressChange(user.id, previous_email))
    if hashed_password is not None:
        password_replaced.fire(session, user.id)
    return user, changed


# --- reads -------------------------------------------------------------------------------


@transaction  # the primary, not a replica: a token revoked a moment ago must be refused
def _load_account(
    session: Session, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> AuthenticatedUser | None:
    if not sessions.is_live(session, user_id, session_id):
        return None
    account = authority.load_account(session, user_id)
    return None if account is None else account.model_copy(update={"session_id": session_id})


async def authenticate(
    db: Database,
    cache: Cache,
    *,
    user_id: uuid.UUID,
    token_version: int,
    session_id: uuid.UUID,
) -> AuthenticatedUser:
    """The user an access token speaks for, if the token is still good for them: from Redis
    when it holds the account as this session sees it, else from the database (then kept in
    Redis). Ending the session moves its tag, so its tokens are refused at once."""
    user = await cache.fetch(
        f"account:{user_id}:{session_id}",
        tags=(
            authority.account_tag(user_id),
            authority.ROLES_TAG,
            sessions.session_tag(session_id),
        ),
        schema=AuthenticatedUser,
        load=lambda: _load_account(db, user_id=user_id, session_id=session_id),
        revocable=True,
    )
    if user is None or not user.is_active or user.token_version != token_version:
        raise InvalidAccessToken
    return user


@transaction
def _password_hash(session: Session, *, user_id: uuid.UUID) -> str | None:
    user = session.get(User, user_id)
    return None if user is None else user.hashed_password


@read_only
def list_users(session: Session, *, page: UserPageRequest) -> UsersPublic:
    found = fetch_page(session, User, UserColumns, page=page, offset=page.offset, with_total=True)
    assert found.total is not None
    held = authority.authority_of(session, [user.id for user in found.items])
    return UsersPublic(
        items=[
            UserPublic(**user.model_dump(), **held[user.id].model_dump()) for user in found.items
        ],
        total=found.total,
        offset=page.offset,
        limit=page.size,
        next_cursor=found.next_cursor,
    )


@read_only
def read_user(session: Session, *, user_id: uuid.UUID) -> UserPublic:
    return authority.public(session, get(session, user_id))


# --- writes ------------------------------------------------------------------------------


@transaction
def _update_me(
    session: Session, *, user_id: uuid.UUID, changes: UserUpdateMe, token_version: int
) -> UserPublic:
    user = find(session, user_id, lock="change")
    if user is None or user.token_version != token_version:
        # Deleted, or the password changed, since this request's token was checked: the
        # token is dead now.
        raise InvalidAccessToken
    return _apply_changes(session, user_id, changes, hashed_password=None)


@transaction
def delete_user(
    session: Session, *, user_id: uuid.UUID, actor: AuthenticatedUser | None = None
) -> None:
    """Deletes the account; its sessions and links go with it (ON DELETE CASCADE). `actor`:
    an admin deleting someone else's account, who must hold whatever it holds; None: the
    owner. Its audit trail stays, with the address masked to tell whose it was."""
    with authority.changing_authority(session):
        user = find(session, user_id, lock="change")
        if user is None:
            # Deleted a moment ago: by someone else (404), or by the owner's own request
            # racing this one, whose token has just died with the account (401).
            raise UserNotFound if actor is not None else InvalidAccessToken
        if actor is not None:
            authority.ensure_covers(
                actor, authority.authority_of(session, [user.id])[user.id].permissions
            )
        session.delete(user)
        authority.account_changed(session, user_id, revoking=True)
        audit.record(
            session,
            ACCOUNT_DELETED,
            actor_id=user_id if actor is None else actor.id,
            subject_id=user_id,
            details={"email": mask_address(user.email)},
        )
    session.commit()


def record_created(session: Session, user: User, actor_id: uuid.UUID | None) -> None:
    """The audit event of a new account (`add` records none: its callers know who acted)."""
    roles = [MEMBER_ROLE, ADMIN_ROLE] if user.is_superuser else [MEMBER_ROLE]
    audit.record(
        session,
        ACCOUNT_CREATED,
        actor_id=actor_id,
        subject_id=user.id,
        details={"roles": sorted(roles), "is_active": user.is_active},
    )


@transaction
def _insert(
    session: Session, *, data: UserCreate, hashed_password: str, actor: AuthenticatedUser
) -> UserPublic:
    if data.is_superuser:
        authority.ensure_covers(
            actor, authority.granted_by(session, authority.roles_named(session, [ADMIN_ROLE]))
        )
    user = add(session, data, hashed_password)
    record_created(session, user, actor.id)
    shown = authority.public(session, user)
    session.commit()
    return shown


@transaction
def _update(
    session: Session,
    *,
    user_id: uuid.UUID,
    changes: UserUpdate,
    hashed_password: str | None,
    actor: AuthenticatedUser,
) -> UserPublic:
    return _apply_changes(session, user_id, changes, hashed_password, actor)


@transaction
def _store_password(
    session: Session, *, user_id: uuid.UUID, hashed_password: str, token_version: int
) -> None:
    if not replace_password(session, user_id, hashed_password, token_version):
        # Another change won the race: the token this request came with is already dead.
        session.rollback()
        raise InvalidAccessToken
    audit.record(session, PASSWORD_CHANGED, actor_id=user_id, subject_id=user_id)
    session.commit()


# --- use cases that hash a password first -------------------------------------------------


async def create_user(
    db: Database, passwords: PasswordHasher, *, data: UserCreate, actor: AuthenticatedUser
) -> UserPublic:
    hashed = await passwords.hash_async(data.password)
    return await _insert(db, data=data, hashed_password=hashed, actor=actor)


async def update_user(
    db: Database,
    passwords: PasswordHasher,
    *,
    user_id: uuid.UUID,
    changes: UserUpdate,
    actor: AuthenticatedUser,
) -> UserPublic:
    hashed = await passwords.hash_async(changes.password) if changes.password else None
    return await _update(db, user_id=user_id, changes=changes, hashed_password=hashed, actor=actor)


async def check_current_password(
    db: Database, passwords: PasswordHasher, user: AuthenticatedUser, password: str
) -> None:
    """The account's owner proves it is them (WrongPassword, or NoPasswordSet for an account
    without one): for the changes a stolen access token alone must not make."""
    # Read here, not kept with the account a token sees: a hash never goes to the cache.
    current = await _password_hash(db, user_id=user.id)
    if current is None:
        # Nothing to compare with: the account signs in through a provider only. Recovery
        # proves the address instead and sets the first password.
        raise NoPasswordSet
    if not await passwords.verify_async(password, current):
        raise WrongPassword


async def update_me(
    db: Database, passwords: PasswordHasher, *, user: AuthenticatedUser, changes: UserUpdateMe
) -> UserPublic:
    """A new email needs the current password (the schema makes it required with the email)."""
    if changes.current_password is not None:
        await check_current_password(db, passwords, user, changes.current_password)
    return await _update_me(db, user_id=user.id, changes=changes, token_version=user.token_version)


async def change_password(
    db: Database, passwords: PasswordHasher, *, user: AuthenticatedUser, change: PasswordChange
) -> None:
    await check_current_password(db, passwords, user, change.current_password)
    hashed = await passwords.hash_async(change.new_password)
    await _store_password(
        db, user_id=user.id, hashed_password=hashed, token_version=user.token_version
    )
