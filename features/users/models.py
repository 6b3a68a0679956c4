"""The `User` table and its schema family, and the account's authority: the roles it holds
(`Role`, `UserRole`) and the permissions each role grants (`RolePermission`).

Roles are data, permissions are code (core/permissions.py). The tables live here because
every authenticated request reads an account together with its authority; the roles
feature is the administrators' API over them.
"""

import uuid
from datetime import datetime

from pydantic import field_validator, model_validator
from sqlalchemy import DateTime, Index, false
from sqlmodel import Field, SQLModel

from core.data import audit
from core.data.clock import utc_now
from core.data.pagination import PageRequest
from core.data.types import Email, NonBlankStr, Password, UTCDateTime

NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254
ROLE_NAME_MAX_LENGTH = 50
ROLE_DESCRIPTION_MAX_LENGTH = 200
# The built-in roles, created by the migration that made roles: `admin` grants every
# permission, present and future; `member`, every account's from the start, grants none.
ADMIN_ROLE = "admin"
MEMBER_ROLE = "member"
# A password being checked, not set: any stored one is at most 72 bytes, so anything far
# longer is refused before bcrypt sees it.
CURRENT_PASSWORD_MAX_LENGTH = 1024


def normalize_email(email: str) -> str:
    """Emails are compared and stored lower-cased, so `A@x.io` and `a@x.io` are one account."""
    return email.strip().lower()


class UserBase(SQLModel):
    name: NonBlankStr = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    email: Email = Field(max_length=EMAIL_MAX_LENGTH)

    @field_validator("email", mode="after")
    @classmethod
    def lower_case_email(cls, value: str) -> str:
        return normalize_email(value)


class User(SQLModel, table=True):
    __tablename__ = "users"
    # The admin list pages through users oldest first; this index serves that order.
    __table_args__ = (Index("ix_users_created_at_id", "created_at", "id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=NAME_MAX_LENGTH)
    email: str = Field(max_length=EMAIL_MAX_LENGTH, unique=True)
    # None: the account was made by signing in through an OpenID Connect provider and has
    # no password until its owner sets one through password recovery.
    hashed_password: str | None = Field(default=None, max_length=255)
    is_active: bool = True
    # Written, never read: whether the account holds `admin`, kept in step for code from
    # before roles (old pods during the rolling update that brings roles). The next release
    # drops it (expand, then contract: README "Changing the schema safely").
    is_superuser: bool = False
    # The owner proved they read mail at `email`; a new address starts unverified again.
    is_verified: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Bumped on every password change and deactivation: access and refresh tokens carry the
    # version they were issued under, so all earlier tokens die at once, everywhere.
    token_version: int = 0
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))


class Role(SQLModel, table=True):
    """A named set of permissions that accounts hold."""

    __tablename__ = "roles"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=ROLE_NAME_MAX_LENGTH, unique=True)
    description: str = Field(default="", max_length=ROLE_DESCRIPTION_MAX_LENGTH)
    # admin and member: never deleted or renamed.
    built_in: bool = False
    # Every permission, present and future (admin): its own list is not read.
    grants_all: bool = False
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))


class RolePermission(SQLModel, table=True):
    """A permission a role grants. A name no installed feature declares any more is kept
    but grants nothing."""

    __tablename__ = "role_permissions"

    role_id: uuid.UUID = Field(foreign_key="roles.id", ondelete="CASCADE", primary_key=True)
    permission: str = Field(max_length=100, primary_key=True)


class UserRole(SQLModel, table=True):
    """A role an account holds."""

    __tablename__ = "user_roles"

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", primary_key=True)
    # Indexed for "who holds this role" (a role's deletion, the last-admin check).
    role_id: uuid.UUID = Field(
        foreign_key="roles.id", ondelete="CASCADE", primary_key=True, index=True
    )


class AccountSession(SQLModel, table=True):
    """Where an account is signed in: one sign-in and every refresh after it (a family of
    refresh tokens). Ending it ends its refresh token and its access tokens at once."""

    __tablename__ = "sessions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    # The account's token_version when it began: a password change ends every session.
    token_version: int
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    last_used_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    # When its newest refresh token expires; moved on by every refresh.
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    # Where the last sign-in or refresh came from (through the trusted proxies), as shown.
    user_agent: str | None = Field(default=None, max_length=audit.USER_AGENT_MAX_LENGTH)
    client_ip: str | None = Field(default=None, max_length=audit.CLIENT_IP_MAX_LENGTH)
    ended_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class RefreshToken(SQLModel, table=True):
    """One issued refresh token (only its SHA-256 is stored). Rotation spends it and issues
    its successor in the same family, the session; presenting a spent one again ends the
    session (theft detection)."""

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    # The session (AccountSession.id) the token belongs to.
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(max_length=64, unique=True)
    # The user's token_version when issued: a password change makes it stale.
    token_version: int
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class SessionPublic(SQLModel):
    id: uuid.UUID
    created_at: UTCDateTime
    last_used_at: UTCDateTime = Field(description="The sign-in, or the latest refresh")
    expires_at: UTCDateTime = Field(description="Unless refreshed before then")
    user_agent: str | None
    client_ip: str | None
    current: bool = Field(description="The session the request's access token belongs to")


class UserRegister(UserBase):
    """What anyone may send to register; anything else in the body is ignored."""

    password: Password


class UserCreate(UserBase):
    """What an admin (users:manage) may send to create an account."""

    password: Password
    is_active: bool = True
    is_superuser: bool = Field(
        default=False,
        description="Deprecated alias, kept one release: true grants the `admin` role "
        "(needs roles:manage)",
    )


class UserChanges(SQLModel):
    """The fields an account's owner and an admin may both change."""

    name: NonBlankStr | None = Field(default=None, min_length=1, max_length=NAME_MAX_LENGTH)
    email: Email | None = Field(default=None, max_length=EMAIL_MAX_LENGTH)

    @field_validator("email", mode="after")
    @classmethod
    def lower_case_email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value is not None else None


class UserUpdateMe(UserChanges):
    """What the owner may change; a new email needs the current password."""

    # The published schema states the rule too, so generated clients ask for both together.
    model_config = SQLModel.model_config | {
        "json_schema_extra": {"dependentRequired": {"email": ["current_password"]}}
    }

    # A stolen access token alone must not move the account to another address (and reset
    # its password from there).
    current_password: str | None = Field(
        default=None,
        min_length=1,
        max_length=CURRENT_PASSWORD_MAX_LENGTH,
        schema_extra={"json_schema_extra": {"format": "password"}},
        description="Required with `email`",
    )

    @model_validator(mode="after")
    def email_needs_the_current_password(self) -> "UserUpdateMe":
        if self.email is not None and self.current_password is None:
            raise ValueError("current_password is required to change the email")
        return self


class UserUpdate(UserChanges):
    """What an admin (users:manage) may change on any account."""

    password: Password | None = None
    is_active: bool | None = None
    is_superuser: bool | None = Field(
        default=None,
        description="Deprecated alias, kept one release: true grants the `admin` role, false "
        "removes it (needs roles:manage)",
    )


class PasswordChange(SQLModel):
    current_password: str = Field(min_length=1, max_length=CURRENT_PASSWORD_MAX_LENGTH)
    new_password: Password


class UserColumns(SQLModel):
    """An account's public columns, as a list page reads them; its authority is added after."""

    id: uuid.UUID
    name: str
    email: str
    is_active: bool
    is_verified: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime


class Authority(SQLModel):
    """What an account may do: the roles it holds and the permissions they grant."""

    roles: list[str] = Field(description="Names of the roles the account holds")
    permissions: list[str] = Field(description="Every permission those roles grant")
    is_superuser: bool = Field(
        description="Deprecated alias, kept one release: whether the account holds `admin`"
    )


class UserPublic(Authority, UserColumns):
    pass


class AuthenticatedUser(Authority, UserColumns):
    """The account a credential speaks for, as every authenticated request sees it, its
    authority included: no password hash, so it may be cached."""

    token_version: int
    # "session": an access token from signing in; "api_key": a key, whose permissions are
    # its own (never more than the owner's), and which account-level changes refuse.
    credential: str = "session"
    # The signed-in session an access token belongs to (None for an API key).
    session_id: uuid.UUID | None = None


class UserPageRequest(PageRequest):
    """A page of the admin list: by `cursor` (any depth, same cost) or by `offset`."""

    offset: int = Field(default=0, ge=0, le=1_000_000_000, description="Rows to skip")

    @model_validator(mode="after")
    def cursor_or_offset(self) -> "UserPageRequest":
        if self.cursor is not None and self.offset:
            raise ValueError("use either cursor or offset, not both")
        return self


class UsersPublic(SQLModel):
    items: list[UserPublic]
    total: int
    offset: int
    limit: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last one"
    )
