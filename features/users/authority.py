"""An account's authority: the roles it holds and what they grant, the rules that guard
changing it, and the account as a credential sees it (its authority included), with the
cache tags that end that view when any of it changes.

Building blocks the users service, the roles feature and every credential (access tokens,
API keys) share; plain functions taking a Session, no unit of work of their own.
"""

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, update
from sqlmodel import Session, col, select

from core import permissions
from core.cache import Cache
from core.config import Settings
from core.data.db import Database, get_as, serialized
from core.data.invalidation import invalidate_on_commit, revoke_on_commit
from core.http.ratelimit import RateLimiter
from features.users.errors import LastRoleManager, Outranked, UnknownRole
from features.users.models import (
    ADMIN_ROLE,
    AuthenticatedUser,
    Authority,
    Role,
    RolePermission,
    User,
    UserColumns,
    UserPublic,
    UserRole,
)
from features.users.permissions import MANAGE_ROLES

# What the cache holds about accounts: every cached response that lists them, and each
# account as a token sees it. Every write to an account moves both (`account_changed`). Every cached
# account also shows what its roles grant: editing or deleting any role moves ROLES_TAG, so
# no holder's cached account outlives the change, without a write per holder.
USERS_TAG = "users"
ROLES_TAG = "roles"


def account_tag(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def account_changed(session: Session, user_id: uuid.UUID, *, revoking: bool) -> None:
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


def ensure_covers_account(session: Session, actor: Authority, user_id: uuid.UUID) -> None:
    """The actor holds every permission the account holds (403 otherwise)."""
    ensure_covers(actor, authority_of(session, [user_id])[user_id].permissions)


def ensure_may_grant(session: Session, actor: Authority, role_name: str) -> None:
    """The actor holds every permission the role grants (403 otherwise)."""
    ensure_covers(actor, granted_by(session, roles_named(session, [role_name])))


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
    account_changed(session, user_id, revoking=True)


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


def load_account(session: Session, user_id: uuid.UUID) -> AuthenticatedUser | None:
    """The account as a credential sees it, authority included; None when it is gone."""
    columns = get_as(session, User, user_id, _AccountColumns)
    if columns is None:
        return None
    authority = authority_of(session, [user_id])[user_id]
    return AuthenticatedUser(**columns.model_dump(), **authority.model_dump())


class _AccountColumns(UserColumns):
    token_version: int
