"""One-time account links (only their SHA-256 is stored) and the schemas of the routes that
mail and spend them."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime
from sqlmodel import Field, SQLModel

from core.data.clock import as_utc, utc_now
from core.data.types import Email, Password, opaque_token_field
from features.users.models import EMAIL_MAX_LENGTH

ACCOUNT_TOKEN_MAX_LENGTH = 512


class AccountTokenPurpose(StrEnum):
    RESET = "reset"
    VERIFY = "verify"
    # Mailed to an account's previous address after an email change: puts it back.
    RESTORE = "restore"


class AccountToken(SQLModel, table=True):
    """A one-time link mailed to `email`: a password reset, an address confirmation, or the
    way back to an address the account had before an email change."""

    __tablename__ = "account_tokens"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    # Plain text, not a database enum: a new purpose needs no ALTER TYPE.
    purpose: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    # The address the link was sent to: it only ever vouches for that address.
    email: str = Field(max_length=EMAIL_MAX_LENGTH)
    # The user's token_version at issue: any password change kills outstanding reset links.
    token_version: int
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))

    def usable(self) -> bool:
        """Neither spent nor expired (what the account behind it allows is checked apart)."""
        return self.used_at is None and as_utc(self.expires_at) > utc_now()


class EmailRequest(SQLModel):
    email: Email = Field(max_length=EMAIL_MAX_LENGTH)


class PasswordReset(SQLModel):
    token: str = opaque_token_field(ACCOUNT_TOKEN_MAX_LENGTH, "The token of the mailed link")
    new_password: Password


class EmailVerification(SQLModel):
    token: str = opaque_token_field(ACCOUNT_TOKEN_MAX_LENGTH, "The token of the mailed link")


class EmailRestore(SQLModel):
    token: str = opaque_token_field(ACCOUNT_TOKEN_MAX_LENGTH, "The token of the mailed link")


class Accepted(SQLModel):
    """The same answer whether or not the address has an account."""

    message: str
