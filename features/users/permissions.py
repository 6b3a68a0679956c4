"""What the users feature lets an account do beyond its own account (core/permissions.py).

`roles:manage` is declared here, beside the roles tables it guards (features/users/models.py);
the roles feature serves the routes that use it.
"""

from core.permissions import permission

READ = permission("users:read", "List and read any account")
MANAGE = permission("users:manage", "Create, change, deactivate and delete accounts")
MANAGE_ROLES = permission(
    "roles:manage", "Create, edit and delete roles, and choose which accounts hold them"
)
