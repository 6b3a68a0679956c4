"""API keys (only a keyed hash of the secret is stored) and the schemas of their routes.

A key reads `fak_<public id>_<secret><checksum>`: a fixed prefix secret scanners can match,
12 base62 characters that find the row in O(1), 32 base62 characters of secret (190 bits),
and a CRC32 of all that in 6 base62 characters, so a scanner (or the app) tells a real key from
a typo or noise offline. Pattern: `fak_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}`.
"""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, SQLModel

from core.data.clock import utc_now
from core.data.types import NonBlankStr, UTCDateTime
from core.permissions import NAME_MAX_LENGTH as PERMISSION_MAX_LENGTH
from core.permissions import is_declared

PUBLIC_ID_LENGTH = 12
NAME_MAX_LENGTH = 100
MAX_PERMISSIONS = 100


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    name: str = Field(max_length=NAME_MAX_LENGTH)
    # The key's public part: how a presented key finds its row.
    public_id: str = Field(max_length=PUBLIC_ID_LENGTH, unique=True)
    # HMAC-SHA256 of the secret under a key derived from SECRET_KEY: a leaked table is no key.
    secret_hash: str = Field(max_length=64)
    permissions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Written at most once a minute per key, never per request.
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


def _declared(name: str) -> str:
    if not is_declared(name):
        raise ValueError("no installed feature declares this permission")
    return name


def _future(moment: datetime | None) -> datetime | None:
    if moment is not None and moment <= utc_now():
        raise ValueError("must be in the future")
    return moment


PermissionName = Annotated[
    str, StringConstraints(max_length=PERMISSION_MAX_LENGTH), AfterValidator(_declared)
]


class ApiKeyCreate(SQLModel):
    name: NonBlankStr = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    permissions: list[PermissionName] = Field(
        default=[],
        max_length=MAX_PERMISSIONS,
        description="Beyond reading the owner's own account; each one the owner holds",
    )
    expires_at: Annotated[UTCDateTime | None, AfterValidator(_future)] = Field(
        default=None, description="When the key stops working; never, if left out"
    )


class ApiKeyPublic(SQLModel):
    """A key as its owner sees it: never the secret."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str = Field(description="`fak_<public id>`: how to recognise the key, not use it")
    permissions: list[str]
    created_at: UTCDateTime
    expires_at: UTCDateTime | None
    last_used_at: UTCDateTime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown this once, never again")


class ApiKeyOwner(SQLModel):
    """Whose keys to list: yours by default; anyone's for a holder of api_keys:manage."""

    user_id: uuid.UUID | None = None
