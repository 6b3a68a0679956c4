"""What the API keys feature lets an account do beyond its own keys (core/permissions.py)."""

from core.permissions import permission

MANAGE = permission("api_keys:manage", "List and revoke every account's API keys")
