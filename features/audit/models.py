"""The audit log as the API shows it, and the filters of its list. The table is core's
(`core.data.audit.AuditEvent`): every feature writes it."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints, model_validator
from sqlmodel import Field, SQLModel

from core.data.audit import EVENT_TYPE_MAX_LENGTH
from core.data.clock import as_utc
from core.data.pagination import PageRequest
from core.data.types import UTCDateTime

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"


def _utc_bound(moment: datetime | None) -> datetime | None:
    """A time bound in UTC (a time without a zone is read as UTC)."""
    if moment is None:
        return None
    try:
        return as_utc(moment)
    except OverflowError:  # 9999-12-31T23:59-01:00 is past the last UTC time there is
        raise ValueError("out of range") from None


TimeBound = Annotated[datetime | None, AfterValidator(_utc_bound)]
EventType = Annotated[
    str, StringConstraints(max_length=EVENT_TYPE_MAX_LENGTH, pattern=EVENT_TYPE_PATTERN)
]


class AuditEventPublic(SQLModel):
    id: uuid.UUID
    created_at: UTCDateTime = Field(description="When it happened (UTC)")
    type: str = Field(description="What happened: `<feature>.<event>`, e.g. `auth.signed_in`")
    actor_id: uuid.UUID | None = Field(
        description="The account that acted; null: nobody signed in (a failed sign-in, a "
        "replayed token), a job or a command"
    )
    subject_id: uuid.UUID | None = Field(description="The account it concerns, if any")
    client_ip: str | None = Field(
        description="The client's address (through the trusted proxies); null outside a request"
    )
    user_agent: str | None = Field(description="The client's User-Agent, at most 256 characters")
    details: dict[str, Any] = Field(
        description="What else the event says; never a secret, password, hash or token"
    )


class AuditEventsPublic(SQLModel):
    items: list[AuditEventPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last one"
    )


class AuditEventQuery(PageRequest):
    """A page of the log, newest first, and what to keep."""

    type: EventType | None = Field(
        default=None, description="Only events of this type, e.g. `auth.sign_in_failed`"
    )
    actor_id: uuid.UUID | None = Field(default=None, description="Only events by this account")
    subject_id: uuid.UUID | None = Field(default=None, description="Only events about this account")
    since: TimeBound = Field(default=None, description="Only events at or after this time")
    until: TimeBound = Field(default=None, description="Only events before this time")

    @model_validator(mode="after")
    def since_before_until(self) -> "AuditEventQuery":
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self
