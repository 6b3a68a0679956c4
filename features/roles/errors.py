"""The roles feature's failures."""

from core.errors import ConflictError, NotFoundError


class RoleNotFound(NotFoundError):
    default_detail = "Role not found"


class RoleNameTaken(ConflictError):
    default_detail = "A role with this name already exists"
    constraint = "uq_roles_name"


class BuiltInRole(ConflictError):
    # admin must keep granting everything, and both must keep their names: code and the
    # is_superuser alias refer to them.
    default_detail = (
        "Built-in roles cannot be deleted or renamed, and admin's permissions are fixed"
    )
