"""HTTP routes for roles and permissions: what exists, what each role grants, who holds it."""

import uuid
from typing import Annotated

from fastapi import APIRouter, status

from core.errors import ForbiddenError, UnauthorizedError, error_responses
from core.http.caching import NOT_MODIFIED
from core.http.deps import DatabaseDep
from features.roles import service
from features.roles.errors import BuiltInRole, RoleNameTaken, RoleNotFound
from features.roles.models import (
    PermissionPublic,
    RoleAssignment,
    RoleCreate,
    RolePublic,
    RoleUpdate,
)
from features.users.dependencies import CurrentUser, require
from features.users.errors import LastRoleManager, Outranked, UnknownRole, UserNotFound
from features.users.models import AuthenticatedUser, UserPublic
from features.users.permissions import MANAGE_ROLES

router = APIRouter(tags=["roles"], responses=error_responses(UnauthorizedError))
RoleManager = Annotated[AuthenticatedUser, require(MANAGE_ROLES)]
managers_only = error_responses(ForbiddenError)


@router.get(
    "/permissions",
    response_model=list[PermissionPublic],
    summary="List permissions",
    responses=NOT_MODIFIED,
)
async def list_permissions(_: CurrentUser) -> list[PermissionPublic]:
    """Every permission the installed features declare, with what it allows."""
    return service.list_permissions()


@router.get(
    "/roles",
    response_model=list[RolePublic],
    summary="List roles",
    responses={**managers_only, **NOT_MODIFIED},
)
async def list_roles(_: RoleManager, db: DatabaseDep) -> list[RolePublic]:
    """Every role, by name, with what it grants now."""
    return await service.list_roles(db)


@router.post(
    "/roles",
    response_model=RolePublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create a role",
    responses={**managers_only, **error_responses(Outranked, RoleNameTaken)},
)
async def create_role(manager: RoleManager, data: RoleCreate, db: DatabaseDep) -> RolePublic:
    """Only permissions the caller holds; an unknown one is 422."""
    return await service.create_role(db, data=data, actor=manager)


@router.get(
    "/roles/{role_id}",
    response_model=RolePublic,
    summary="Read a role",
    responses={**managers_only, **error_responses(RoleNotFound), **NOT_MODIFIED},
)
async def read_role(_: RoleManager, role_id: uuid.UUID, db: DatabaseDep) -> RolePublic:
    return await service.read_role(db, role_id=role_id)


@router.patch(
    "/roles/{role_id}",
    response_model=RolePublic,
    summary="Rename or edit a role",
    responses={
        **managers_only,
        **error_responses(Outranked, RoleNotFound, RoleNameTaken, BuiltInRole, LastRoleManager),
    },
)
async def update_role(
    manager: RoleManager, role_id: uuid.UUID, changes: RoleUpdate, db: DatabaseDep
) -> RolePublic:
    """`permissions` replaces the list; every holder has the new permissions (and no longer
    the old ones) on every instance once this answers."""
    return await service.update_role(db, role_id=role_id, changes=changes, actor=manager)


@router.delete(
    "/roles/{role_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a role",
    responses={
        **managers_only,
        **error_responses(Outranked, RoleNotFound, BuiltInRole, LastRoleManager),
    },
)
async def delete_role(manager: RoleManager, role_id: uuid.UUID, db: DatabaseDep) -> None:
    """Its holders lose what it granted, at once; admin and member cannot be deleted."""
    await service.delete_role(db, role_id=role_id, actor=manager)


@router.put(
    "/users/{user_id}/roles",
    response_model=UserPublic,
    summary="Set a user's roles",
    responses={
        **managers_only,
        **error_responses(Outranked, UserNotFound, UnknownRole, LastRoleManager),
    },
)
async def assign_roles(
    manager: RoleManager, user_id: uuid.UUID, assignment: RoleAssignment, db: DatabaseDep
) -> UserPublic:
    """Replaces the account's roles by these (role names); effective everywhere at once."""
    return await service.assign_roles(db, user_id=user_id, assignment=assignment, actor=manager)
