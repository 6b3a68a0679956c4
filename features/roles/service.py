"""Roles use cases: every change of what a role grants, or of who holds it, runs under the
users feature's authority lock and is a revocation (features/users/service.py).

An actor hands out only what it holds: a role's permissions, old and new, and the roles an
account gains or loses must all be among the actor's own, so roles:manage alone never makes
anyone (the actor included) more than the actor is.
"""

import uuid

from sqlalchemy import delete
from sqlmodel import Session, col, select

from core.data import audit
from core.data.clock import utc_now
from core.data.db import read_only, transaction
from core.data.invalidation import invalidate_on_commit, revoke_on_commit
from core.permissions import declared
from features.roles.errors import BuiltInRole, RoleNotFound
from features.roles.models import (
    PermissionPublic,
    RoleAssignment,
    RoleCreate,
    RolePublic,
    RoleUpdate,
)
from features.users import authority as users_authority
from features.users import service as users_service
from features.users.models import AuthenticatedUser, Role, RolePermission, UserPublic

# The audit events this feature records (core/data/audit.py); the actor is the role manager.
ROLE_CREATED = audit.event_type("roles.created", "A role was created (name, permissions)")
ROLE_UPDATED = audit.event_type("roles.updated", "A role was renamed or its permissions changed")
ROLE_DELETED = audit.event_type("roles.deleted", "A role was deleted; its holders lost it")
ROLES_ASSIGNED = audit.event_type(
    "roles.assigned", "An account's roles were replaced (old and new in details)"
)


def _get(session: Session, role_id: uuid.UUID) -> Role:
    role = session.get(Role, role_id)
    if role is None:
        raise RoleNotFound
    return role


def _public(session: Session, role: Role) -> RolePublic:
    return RolePublic(
        id=role.id,
        name=role.name,
        description=role.description,
        permissions=sorted(users_authority.granted_by(session, [role])),
        built_in=role.built_in,
        grants_all=role.grants_all,
        created_at=role.created_at,
        updated_at=role.updated_at,
    )


def _grant(session: Session, role: Role, permissions: list[str]) -> None:
    session.execute(delete(RolePermission).where(col(RolePermission.role_id) == role.id))
    session.add_all(RolePermission(role_id=role.id, permission=name) for name in permissions)


def _granted_everywhere(session: Session) -> None:
    """What roles grant changed: every cached account (each shows its permissions) and every
    cached list of accounts dies with this commit, without a write per holder."""
    revoke_on_commit(session, users_authority.ROLES_TAG)
    invalidate_on_commit(session, users_authority.USERS_TAG)


# --- reads -------------------------------------------------------------------------------


def list_permissions() -> list[PermissionPublic]:
    return [PermissionPublic(name=item.name, description=item.description) for item in declared()]


@read_only
def list_roles(session: Session) -> list[RolePublic]:
    return [_public(session, role) for role in session.exec(select(Role).order_by(col(Role.name)))]


@read_only
def read_role(session: Session, *, role_id: uuid.UUID) -> RolePublic:
    return _public(session, _get(session, role_id))


# --- writes ------------------------------------------------------------------------------


@transaction
def create_role(session: Session, *, data: RoleCreate, actor: AuthenticatedUser) -> RolePublic:
    """A new role nobody holds yet; a taken name is RoleNameTaken."""
    users_authority.ensure_covers(actor, data.permissions)
    role = Role(name=data.name, description=data.description)
    session.add(role)
    _grant(session, role, data.permissions)
    audit.record(
        session,
        ROLE_CREATED,
        actor_id=actor.id,
        subject_id=None,
        details={"role_id": str(role.id), "name": role.name, "permissions": data.permissions},
    )
    shown = _public(session, role)
    session.commit()
    return shown


@transaction
def update_role(
    session: Session, *, role_id: uuid.UUID, changes: RoleUpdate, actor: AuthenticatedUser
) -> RolePublic:
    with users_authority.changing_authority(session):
        role = _get(session, role_id)
        if role.built_in and changes.name not in (None, role.name):
            raise BuiltInRole
        granted = sorted(users_authority.granted_by(session, [role]))
        users_authority.ensure_covers(actor, granted)
        details: dict[str, object] = {"role_id": str(role.id), "name": role.name}
        if changes.permissions is not None:
            if role.grants_all:
                raise BuiltInRole
            users_authority.ensure_covers(actor, changes.permissions)
            _grant(session, role, changes.permissions)
            details["permissions"] = {"old": granted, "new": changes.permissions}
        if changes.name not in (None, role.name):
            details["renamed"] = {"old": role.name, "new": changes.name}
        for field in ("name", "description"):
            value = getattr(changes, field)
            if value is not None:
                setattr(role, field, value)
        role.updated_at = utc_now()
        session.add(role)
        _granted_everywhere(session)
        audit.record(session, ROLE_UPDATED, actor_id=actor.id, subject_id=None, details=details)
    shown = _public(session, role)
    session.commit()
    return shown


@transaction
def delete_role(session: Session, *, role_id: uuid.UUID, actor: AuthenticatedUser) -> None:
    """Its holders lose what it granted from this commit on."""
    with users_authority.changing_authority(session):
        role = _get(session, role_id)
        if role.built_in:
            raise BuiltInRole
        granted = sorted(users_authority.granted_by(session, [role]))
        users_authority.ensure_covers(actor, granted)
        session.delete(role)
        _granted_everywhere(session)
        audit.record(
            session,
            ROLE_DELETED,
            actor_id=actor.id,
            subject_id=None,
            details={"role_id": str(role.id), "name": role.name, "permissions": granted},
        )
    session.commit()


@transaction
def assign_roles(
    session: Session, *, user_id: uuid.UUID, assignment: RoleAssignment, actor: AuthenticatedUser
) -> UserPublic:
    """The account holds exactly these roles from this commit on."""
    with users_authority.changing_authority(session):
        user = users_service.get(session, user_id)
        held = users_authority.authority_of(session, [user.id])[user.id]
        users_authority.ensure_covers(actor, held.permissions)
        roles = users_authority.roles_named(session, assignment.roles)
        users_authority.ensure_covers(actor, users_authority.granted_by(session, roles))
        users_authority.replace_roles(session, user.id, roles)
        audit.record(
            session,
            ROLES_ASSIGNED,
            actor_id=actor.id,
            subject_id=user.id,
            details={"roles": {"old": held.roles, "new": sorted(assignment.roles)}},
        )
    shown = users_authority.public(session, user)
    session.commit()
    return shown
