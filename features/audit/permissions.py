"""What the audit feature lets an account do (core/permissions.py)."""

from core.permissions import permission

READ = permission("audit:read", "Read the audit log: who did what to which account, and from where")
