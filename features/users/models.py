"""The `User` table and its schema family."""

import uuid
from datetime import datetime

from pydantic import EmailStr, field_validator, model_validator
from sqlalchemy import DateTime, Index, false
from sqlmodel import Field, SQLModel

from core.data.clock import utc_now
from core.data.pagination import PageRequest
from core.data.types import CleanStr, Password, UTCDateTime

NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254
# A password being checked, not set: any stored one is at most 72 bytes, so anything far
# longer is refused before bcrypt sees it.
CURRENT_PASSWORD_MAX_LENGTH = 1024


def normalize_email(email: str) -> str:
    """Emails are compared and stored lower-cased, so `A@x.io` and `a@x.io` are one account."""
    return email.strip().lower()


class UserBase(SQLModel):
    name: CleanStr = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    email: EmailStr = Field(max_length=EMAIL_MAX_LENGTH)

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
    hashed_password: str = Field(max_length=255)
    is_active: bool = True
    is_superuser: bool = False
    # The owner proved they read mail at `email`; a new address starts unverified again.
    is_verified: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Bumped on every password change and deactivation: access and refresh tokens carry the
    # version they were issued under, so all earlier tokens die at once, everywhere.
    token_version: int = 0
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))


class UserRegister(UserBase):
    """What anyone may send to register; anything else in the body is ignored."""

    password: Password


class UserCreate(UserBase):
    """What a superuser may send to create an account."""

    password: Password
    is_active: bool = True
    is_superuser: bool = False


class UserChanges(SQLModel):
    """The fields an account's owner and an admin may both change."""

    name: CleanStr | None = Field(default=None, min_length=1, max_length=NAME_MAX_LENGTH)
    email: EmailStr | None = Field(default=None, max_length=EMAIL_MAX_LENGTH)

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
    """What a superuser may change on any account."""

    password: Password | None = None
    is_active: bool | None = None
    is_superuser: bool | None = None


class PasswordChange(SQLModel):
    current_password: str = Field(min_length=1, max_length=CURRENT_PASSWORD_MAX_LENGTH)
    new_password: Password


class UserPublic(SQLModel):
    id: uuid.UUID
    name: str
    email: str
    is_active: bool
    is_superuser: bool
    is_verified: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime


class AuthenticatedUser(SQLModel):
    """The account an access token speaks for, as every authenticated request sees it: no
    password hash, so it may be cached."""

    id: uuid.UUID
    name: str
    email: str
    is_active: bool
    is_superuser: bool
    is_verified: bool
    token_version: int
    created_at: UTCDateTime
    updated_at: UTCDateTime


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
