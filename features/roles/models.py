"""The schemas of the roles API. The tables (`Role`, `RolePermission`, `UserRole`) are the
account's authority and live with the account, in features/users/models.py."""

import uuid
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from sqlmodel import Field, SQLModel

from core.data.types import CleanStr, UTCDateTime
from core.permissions import NAME_MAX_LENGTH as PERMISSION_MAX_LENGTH
from core.permissions import is_declared
from features.users.models import ROLE_DESCRIPTION_MAX_LENGTH, ROLE_NAME_MAX_LENGTH

ROLE_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
MAX_PERMISSIONS_PER_ROLE = 200
MAX_ROLES_PER_ACCOUNT = 50


def _declared(name: str) -> str:
    if not is_declared(name):
        raise ValueError("no installed feature declares this permission")
    return name


def _unique(names: list[str]) -> list[str]:
    return sorted(set(names))


PermissionName = Annotated[
    str, StringConstraints(max_length=PERMISSION_MAX_LENGTH), AfterValidator(_declared)
]
RoleName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ROLE_NAME_MAX_LENGTH, pattern=ROLE_NAME_PATTERN),
]


class RoleCreate(SQLModel):
    name: RoleName
    description: CleanStr = Field(default="", max_length=ROLE_DESCRIPTION_MAX_LENGTH)
    permissions: Annotated[
        list[PermissionName], AfterValidator(_unique), Field(max_length=MAX_PERMISSIONS_PER_ROLE)
    ] = []


class RoleUpdate(SQLModel):
    """Only what is sent changes; `permissions` replaces the whole list."""

    name: RoleName | None = None
    description: CleanStr | None = Field(default=None, max_length=ROLE_DESCRIPTION_MAX_LENGTH)
    permissions: (
        Annotated[
            list[PermissionName],
            AfterValidator(_unique),
            Field(max_length=MAX_PERMISSIONS_PER_ROLE),
        ]
        | None
    ) = None


class RolePublic(SQLModel):
    id: uuid.UUID
    name: str
    description: str
    permissions: list[str] = Field(description="What the role grants now (admin: everything)")
    built_in: bool
    grants_all: bool = Field(description="Every permission, present and future (admin)")
    created_at: UTCDateTime
    updated_at: UTCDateTime


class RoleAssignment(SQLModel):
    roles: Annotated[
        list[RoleName], AfterValidator(_unique), Field(max_length=MAX_ROLES_PER_ACCOUNT)
    ] = Field(description="Names of every role the account holds from now on")


class PermissionPublic(SQLModel):
    name: str
    description: str
