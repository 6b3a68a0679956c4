"""Users use cases: plain functions taking a Session first, domain errors out, one commit each.

Routes call the `@transaction` and `@read_only` functions as `await service.fn(db, ...)` (see
core/data/db.py) and the async ones, which hash a password on the hasher's threads before they
hand the result to a unit of work. The undecorated functions are building blocks that other
units of work, other features and manage.py call with a session of their own.
"""

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import permissions
from core.cache import Cache
from core.config import Settings
from core.data.clock import utc_now
from core.data.db import Database, changed_rows, get_as, read_only, serialized, transaction
from core.data.hooks import Hook
from core.data.invalidation import invalidate_on_commit, revoke_on_commit
from core.data.pagination import fetch_page
from core.http.ratelimit import RateLimiter
from core.security import PasswordHasher
from features.users.errors import (
    InvalidAccessToken,
    LastRoleManager,
    Outranked,
    UnknownRole,
    UserNotFound,
    WrongPassword,
)
from features.users.models import (
    ADMIN_ROLE,
    MEMBER_ROLE,
    AuthenticatedUser,
    Authority,
    PasswordChange,
    Role,
    RolePermission,
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
from features.users.permissions import MANAGE_ROLES

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


# What the cache holds about accounts: every cached response that lists them, and each
# account as a token sees it. Every write to an account moves both (`_changed`). Every cached
# account also shows what its roles grant: editing or deleting any role moves ROLES_TAG, so
# no holder's cached account outlives the change, without a write per holder.
USERS_TAG = "users"
ROLES_TAG = "roles"


def account_tag(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def _changed(session: Session, user_id: uuid.UUID, *, revoking: bool) -> None:
    """A write to an account: the cached account and the lists that show it die with its
    commit. `revoking`: it changes whether a token still works (password, deactivation,
    superuser rights, deletion), so with Redis unreachable the response waits until no worker
    can serve the old account (core/cache.py, core/data/invalidation.py)."""
    if revoking:
        revoke_on_commit(session, account_tag(user_id))
    else:
        invalidate_on_commit(session, account_tag(user_id))
    invalidate_on_commit(session, USERS_TAG)


# --- credentials other features issue ----------------------------------------------------

# A Bearer credential that is not an access token, told apart by its prefix (API keys:
# `fak_...`), is checked by the feature that issues it; features/registry.py connects it.
CredentialCheck = Callable[[str, "CredentialContext"], Awaitable[AuthenticatedUser]]


@dataclass(frozen=True, slots=True)
class CredentialContext:
    """What checking a credential may use: the request's machinery."""

    db: Database
    cache: Cache
    settings: Settings
    limiter: RateLimiter


class Credentials:
    """The credential kinds connected, by prefix."""

    def __init__(self) -> None:
        self._checks: dict[str, CredentialCheck] = {}

    def connect(self, prefix: str, check: CredentialCheck) -> None:
        self._checks[prefix] = check

    def check_for(self, token: str) -> CredentialCheck | None:
        return next(
            (check for prefix, check in self._checks.items() if token.startswith(prefix)), None
        )


credentials = Credentials()


# --- authority: the roles an account holds and what they grant ----------------------------

# Every change that may take the right to manage roles away from an account (a demotion, a
# deactivation, a deletion, a role's edit or deletion, new roles for an account) holds this
# lock from its first statement to its commit: two of them can never both see the other's
# account still able to manage roles.
AUTHORITY_LOCK = "users:authority"


def authority_of(session: Session, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Authority]:
    """Each account's roles and the permissions they grant (every declared one for `admin`;
    a name no feature declares any more grants nothing), in one query."""
    rows = session.execute(
        select(UserRole.user_id, Role.name, Role.grants_all, col(RolePermission.permission))
        .join(Role, col(Role.id) == UserRole.role_id)
        .outerjoin(RolePermission, col(RolePermission.role_id) == Role.id)
        .where(col(UserRole.user_id).in_(list(user_ids)))
    ).all()
    everything = {declared.name for declared in permissions.declared()}
    roles: dict[uuid.UUID, set[str]] = {user_id: set() for user_id in user_ids}
    granted: dict[uuid.UUID, set[str]] = {user_id: set() for user_id in user_ids}
    for user_id, role, grants_all, permission in rows:
        roles[user_id].add(role)
        if grants_all:
            granted[user_id] |= everything
        elif permission in everything:
            granted[user_id].add(permission)
    return {
        user_id: Authority(
            roles=sorted(roles[user_id]),
            permissions=sorted(granted[user_id]),
            is_superuser=ADMIN_ROLE in roles[user_id],
        )
        for user_id in user_ids
    }


def public(session: Session, user: User) -> UserPublic:
    """The account as the API shows it, its authority included."""
    columns = UserColumns.model_validate(user, from_attributes=True)
    return UserPublic(
        **columns.model_dump(), **authority_of(session, [user.id])[user.id].model_dump()
    )


def roles_named(session: Session, names: Iterable[str]) -> list[Role]:
    """The roles with these names; UnknownRole if any has none."""
    wanted = set(names)
    found = list(session.exec(select(Role).where(col(Role.name).in_(wanted))))
    missing = wanted - {role.name for role in found}
    if missing:
        raise UnknownRole(f"No role has the name {sorted(missing)[0]!r}")
    return found


def granted_by(session: Session, roles: Iterable[Role]) -> set[str]:
    """Every declared permission these roles grant."""
    role_list = list(roles)
    if any(role.grants_all for role in role_list):
        return {declared.name for declared in permissions.declared()}
    if not role_list:
        return set()
    granted = session.exec(
        select(RolePermission.permission).where(
            col(RolePermission.role_id).in_([role.id for role in role_list])
        )
    )
    return {name for name in granted if permissions.is_declared(name)}


def ensure_covers(actor: Authority, wanted: Iterable[str]) -> None:
    """An actor may hand out, or act on an account holding, only permissions it holds
    itself: users:manage alone never reaches an admin's account or the admin role."""
    if not set(wanted) <= set(actor.permissions):
        raise Outranked


def _role_managers(session: Session) -> int:
    """Active accounts holding a role that grants roles:manage."""
    manages = or_(
        col(Role.grants_all),
        col(Role.id).in_(
            select(RolePermission.role_id).where(RolePermission.permission == MANAGE_ROLES)
        ),
    )
    holders = (
        select(func.count(func.distinct(User.id)))
        .join(UserRole, col(UserRole.user_id) == User.id)
        .join(Role, col(Role.id) == UserRole.role_id)
        .where(col(User.is_active), manages)
    )
    count: int = session.execute(holders).scalar_one()
    return count


@contextmanager
def changing_authority(session: Session) -> Iterator[None]:
    """Wrap a change that may take the right to manage roles away from someone: it runs
    under AUTHORITY_LOCK (taken first: SQLite cannot take it later) and is refused if it
    leaves no active account able to manage roles where there was one."""
    serialized(session, AUTHORITY_LOCK)
    before = _role_managers(session)
    yield
    session.flush()
    if before and not _role_managers(session):
        raise LastRoleManager


def replace_roles(session: Session, user_id: uuid.UUID, roles: Iterable[Role]) -> None:
    """The account holds exactly these roles from this commit on; its cached account (and so
    every token's view of it) is revoked. Call inside `changing_authority`. Does not commit."""
    held = list(roles)
    session.execute(delete(UserRole).where(col(UserRole.user_id) == user_id))
    session.add_all(UserRole(user_id=user_id, role_id=role.id) for role in held)
    admin = any(role.name == ADMIN_ROLE for role in held)
    session.execute(update(User).where(col(User.id) == user_id).values(is_superuser=admin))
    _changed(session, user_id, revoking=True)


def _set_admin(session: Session, user: User, admin: bool) -> None:
    """The is_superuser alias: grant or remove the admin role. Call inside
    `changing_authority`."""
    held = {role.name: role for role in roles_named(session, _role_names(session, user.id))}
    if admin:
        held[ADMIN_ROLE] = roles_named(session, [ADMIN_ROLE])[0]
    else:
        held.pop(ADMIN_ROLE, None)
    replace_roles(session, user.id, held.values())


def _role_names(session: Session, user_id: uuid.UUID) -> list[str]:
    return authority_of(session, [user_id])[user_id].roles


# --- building blocks ---------------------------------------------------------------------


def get_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == normalize_email(email))).first()


def get(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
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
    # A taken address is EmailTaken, raised by the unit of work whenever the insert is flushed.
    session.add(user)
    granted = [MEMBER_ROLE, ADMIN_ROLE] if data.is_superuser else [MEMBER_ROLE]
    session.add_all(
        UserRole(user_id=user.id, role_id=role.id) for role in roles_named(session, granted)
    )
    # A new account: nothing can have cached it, only the lists change.
    invalidate_on_commit(session, USERS_TAG)
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
    _changed(session, user_id, revoking=True)
    if changed_rows(session, statement) != 1:
        return False
    password_replaced.fire(session, user_id)
    return True


def restore_address(session: Session, user_id: uuid.UUID, email: str) -> bool:
    """Put back an address the account had, proven by a link mailed to it, and end every
    session (the change may have come from a stolen one); False when the account is gone.
    A taken address is EmailTaken. Does not commit."""
    user = session.get(User, user_id)
    if user is None:
        return False
    user.email = email
    user.is_verified = True
    user.token_version += 1
    user.updated_at = utc_now()
    session.add(user)
    _changed(session, user_id, revoking=True)
    return True


def mark_email_verified(session: Session, user_id: uuid.UUID, email: str) -> None:
    """The owner proved they read mail at `email`; nothing changes if the account has moved
    to another address since. Does not commit."""
    changed_rows(
        session,
        update(User)
        .where(col(User.id) == user_id, col(User.email) == email)
        .values(is_verified=True, updated_at=utc_now()),
    )
    _changed(session, user_id, revoking=False)


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
    add(session, first, hashed_password, is_verified=True)
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
    actor: Authority | None = None,
) -> UserPublic:
    """Apply only the fields the schema allows and the caller sent, and commit. `actor`: an
    admin changing someone's account, who must hold whatever that account holds."""
    values: dict[str, Any] = changes.model_dump(
        exclude_unset=True, exclude={"password", "current_password"}
    )
    values = {key: value for key, value in values.items() if value is not None}
    if "is_active" in values or "is_superuser" in values:
        with changing_authority(session):
            user = _change(session, user_id, values, hashed_password, actor)
    else:
        user = _change(session, user_id, values, hashed_password, actor)
    shown = public(session, user)
    session.commit()
    return shown


def _change(
    session: Session,
    user_id: uuid.UUID,
    values: dict[str, Any],
    hashed_password: str | None,
    actor: Authority | None,
) -> User:
    user = get(session, user_id)
    if actor is not None:
        ensure_covers(actor, authority_of(session, [user.id])[user.id].permissions)
    admin = values.pop("is_superuser", None)
    if admin is not None:
        if actor is not None:
            ensure_covers(actor, granted_by(session, roles_named(session, [ADMIN_ROLE])))
        _set_admin(session, user, admin)
    previous_email = user.email
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
    revoking = hashed_password is not None or "is_active" in values
    _changed(session, user.id, revoking=revoking)
    if email_changed:
        # The reactions' own queries flush the new address: if another account took it a
        # moment ago, the unit of work turns the violation into EmailTaken (core/data/db.py).
        new_address.fire(session, user)
        address_replaced.fire(session, AddressChange(user.id, previous_email))
    if hashed_password is not None:
        password_replaced.fire(session, user.id)
    return user


# --- reads -------------------------------------------------------------------------------


def load_account(session: Session, user_id: uuid.UUID) -> AuthenticatedUser | None:
    """The account as a credential sees it, authority included; None when it is gone."""
    columns = get_as(session, User, user_id, _AccountColumns)
    if columns is None:
        return None
    authority = authority_of(session, [user_id])[user_id]
    return AuthenticatedUser(**columns.model_dump(), **authority.model_dump())


@transaction  # the primary, not a replica: a token revoked a moment ago must be refused
def _load_account(session: Session, *, user_id: uuid.UUID) -> AuthenticatedUser | None:
    return load_account(session, user_id)


class _AccountColumns(UserColumns):
    token_version: int


async def authenticate(
    db: Database, cache: Cache, *, user_id: uuid.UUID, token_version: int
) -> AuthenticatedUser:
    """The user an access token speaks for, if the token is still good for them: from Redis
    when it holds the account, else from the database (then kept in Redis)."""
    user = await cache.fetch(
        f"account:{user_id}",
        tags=(account_tag(user_id), ROLES_TAG),
        schema=AuthenticatedUser,
        load=lambda: _load_account(db, user_id=user_id),
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
    authority = authority_of(session, [user.id for user in found.items])
    return UsersPublic(
        items=[
            UserPublic(**user.model_dump(), **authority[user.id].model_dump())
            for user in found.items
        ],
        total=found.total,
        offset=page.offset,
        limit=page.size,
        next_cursor=found.next_cursor,
    )


@read_only
def read_user(session: Session, *, user_id: uuid.UUID) -> UserPublic:
    return public(session, get(session, user_id))


# --- writes ------------------------------------------------------------------------------


@transaction
def _update_me(
    session: Session, *, user_id: uuid.UUID, changes: UserUpdateMe, token_version: int
) -> UserPublic:
    if get(session, user_id).token_version != token_version:
        # The password changed since this request's token was checked: it is dead now.
        raise InvalidAccessToken
    return _apply_changes(session, user_id, changes, hashed_password=None)


@transaction
def delete_user(session: Session, *, user_id: uuid.UUID, actor: Authority | None = None) -> None:
    """Deletes the account; its sessions and links go with it (ON DELETE CASCADE). `actor`:
    an admin deleting someone else's account, who must hold whatever it holds."""
    with changing_authority(session):
        user = get(session, user_id)
        if actor is not None:
            ensure_covers(actor, authority_of(session, [user.id])[user.id].permissions)
        session.delete(user)
        _changed(session, user_id, revoking=True)
    session.commit()


@transaction
def _insert(
    session: Session, *, data: UserCreate, hashed_password: str, actor: Authority
) -> UserPublic:
    if data.is_superuser:
        ensure_covers(actor, granted_by(session, roles_named(session, [ADMIN_ROLE])))
    user = add(session, data, hashed_password)
    shown = public(session, user)
    session.commit()
    return shown


@transaction
def _update(
    session: Session,
    *,
    user_id: uuid.UUID,
    changes: UserUpdate,
    hashed_password: str | None,
    actor: Authority,
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
    session.commit()


# --- use cases that hash a password first -------------------------------------------------


async def create_user(
    db: Database, passwords: PasswordHasher, *, data: UserCreate, actor: Authority
) -> UserPublic:
    hashed = await passwords.hash_async(data.password)
    return await _insert(db, data=data, hashed_password=hashed, actor=actor)


async def update_user(
    db: Database,
    passwords: PasswordHasher,
    *,
    user_id: uuid.UUID,
    changes: UserUpdate,
    actor: Authority,
) -> UserPublic:
    hashed = await passwords.hash_async(changes.password) if changes.password else None
    return await _update(db, user_id=user_id, changes=changes, hashed_password=hashed, actor=actor)


async def _check_current_password(
    db: Database, passwords: PasswordHasher, user: AuthenticatedUser, password: str
) -> None:
    # Read here, not kept with the account a token sees: a hash never goes to the cache.
    current = await _password_hash(db, user_id=user.id)
    if not await passwords.verify_async(password, current):
        raise WrongPassword


async def update_me(
    db: Database, passwords: PasswordHasher, *, user: AuthenticatedUser, changes: UserUpdateMe
) -> UserPublic:
    """A new email needs the current password (the schema makes it required with the email)."""
    if changes.current_password is not None:
        await _check_current_password(db, passwords, user, changes.current_password)
    return await _update_me(db, user_id=user.id, changes=changes, token_version=user.token_version)


async def change_password(
    db: Database, passwords: PasswordHasher, *, user: AuthenticatedUser, change: PasswordChange
) -> None:
    await _check_current_password(db, passwords, user, change.current_password)
    hashed = await passwords.hash_async(change.new_password)
    await _store_password(
        db, user_id=user.id, hashed_password=hashed, token_version=user.token_version
    )
