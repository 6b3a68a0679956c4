"""The audit log: who did what to which account, when and from where, written in the
transaction of the change it records, so a change that rolls back records nothing.

Each feature declares the event types it records, one line each, where it records them:

    SIGNED_IN = audit.event_type("auth.signed_in", "A sign-in succeeded")

and records them in the unit of work that makes the change, before its commit:

    audit.record(session, SIGNED_IN, actor_id=user.id, subject_id=user.id)

`record` adds the row to the session's transaction; the client's address and user agent come
from the request being served (`request_origin`, set once per request by the HTTP edge:
core/http/middleware.py). Jobs and commands run outside any request and record none.

`details` is a small JSON object that never holds a secret, a password, a hash or a token:
`record` refuses keys that name one, values that are not plain JSON scalars or lists of them,
and objects larger than DETAILS_MAX_BYTES. An address nobody has an account for is stored
only masked and as a keyed fingerprint (`address_fingerprint`), so the log is no address book.

The log is append-only: no route edits or deletes an event, and the database refuses any
UPDATE of one (a trigger installed by the migration). Events older than
AUDIT_RETENTION_DAYS are removed by the audit feature's periodic job (`purge_before`).
"""

import hashlib
import hmac
import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, delete
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, Session, SQLModel, col, select

from core.data.clock import utc_now
from core.data.db import changed_rows
from core.observability.masking import mask_address

EVENT_TYPE_MAX_LENGTH = 64
USER_AGENT_MAX_LENGTH = 256
# The longest text form of an IPv6 address, and the two words get_client_ip may return.
CLIENT_IP_MAX_LENGTH = 45
DETAILS_MAX_BYTES = 2048
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
# Words no details key may hold: whatever such a key names must never be in the log.
_FORBIDDEN_KEY_WORDS = ("password", "secret", "token", "hash", "credential", "cookie")


class AuditEvent(SQLModel, table=True):
    """One recorded event. Rows are never updated; the retention job deletes old ones.

    The accounts are plain ids, not foreign keys: the trail of an account outlives it."""

    __tablename__ = "audit_events"
    # Newest first, on the whole log and filtered by subject, actor or type: each list reads
    # its own index backwards (core/data/pagination.py); the retention job reads the first.
    __table_args__ = (
        Index("ix_audit_events_created_at_id", "created_at", "id"),
        Index("ix_audit_events_subject_id_created_at_id", "subject_id", "created_at", "id"),
        Index("ix_audit_events_actor_id_created_at_id", "actor_id", "created_at", "id"),
        Index("ix_audit_events_type_created_at_id", "type", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    type: str = Field(max_length=EVENT_TYPE_MAX_LENGTH)
    # Who acted (None: nobody signed in, a job, a command); whose account it concerns.
    actor_id: uuid.UUID | None = None
    subject_id: uuid.UUID | None = None
    client_ip: str | None = Field(default=None, max_length=CLIENT_IP_MAX_LENGTH)
    user_agent: str | None = Field(default=None, max_length=USER_AGENT_MAX_LENGTH)
    details: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSON().with_variant(JSONB(), "postgresql")
    )


# --- event types -------------------------------------------------------------------------

_declared: dict[str, str] = {}


def event_type(name: str, description: str) -> str:
    """Declare an event type (`<feature>.<what happened>`) and return its name."""
    if len(name) > EVENT_TYPE_MAX_LENGTH or not _EVENT_TYPE.match(name):
        raise ValueError(f"an event type is named <feature>.<event> in lower case, not {name!r}")
    known = _declared.get(name)
    if known is not None and known != description:
        raise ValueError(f"{name} is declared twice, with two descriptions")
    _declared[name] = description
    return name


def declared_event_types() -> dict[str, str]:
    """Every event type declared so far, with its description, by name."""
    return dict(sorted(_declared.items()))


# --- where the request came from ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, as the HTTP edge saw it: the peer's address (the client's,
    through the server's trusted proxies) and the User-Agent header, cut to the stored
    length. Bounded and normalized only when an event is recorded: most requests record
    none, and pay nothing for it."""

    host: str | None
    raw_user_agent: str | None

    @property
    def client_ip(self) -> str:
        return normalized_ip(self.host)

    @property
    def user_agent(self) -> str | None:
        return bounded_user_agent(self.raw_user_agent)


# Set by the HTTP edge for the request being served; units of work run in a copy of the
# request's context (core/observability/metrics.py, ObservedThreadPoolExecutor), so they
# see it. Jobs and commands have none.
request_origin: ContextVar[Origin | None] = ContextVar("request_origin", default=None)


def normalized_ip(host: str | None) -> str:
    """An address as every log and limit sees it: its canonical text, `unknown` without a
    peer, `invalid` for anything that is not an IP address (a forged forwarding header can
    carry any text)."""
    if host is None:
        return "unknown"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "invalid"


def bounded_user_agent(raw: str | None) -> str | None:
    """A User-Agent header as it may be stored: control characters replaced, at most
    USER_AGENT_MAX_LENGTH characters, None when empty."""
    if not raw:
        return None
    printable = "".join(char if char.isprintable() else "?" for char in raw[:USER_AGENT_MAX_LENGTH])
    return printable.strip() or None


# --- recording ---------------------------------------------------------------------------


def address_fingerprint(secret_key: str, address: str) -> str:
    """A keyed fingerprint of an address: the same address always gives the same one, so the
    log can tell one guessed address from many, but without SECRET_KEY nobody can test an
    address against it (a plain hash of a known address list would reverse it)."""
    key = hmac.new(secret_key.encode(), b"audit-addresses", hashlib.sha256).digest()
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


def unknown_address(secret_key: str, address: str) -> dict[str, str]:
    """How an address that belongs to no account appears in details: masked, and its
    fingerprint."""
    return {
        "email": mask_address(address),
        "email_fingerprint": address_fingerprint(secret_key, address),
    }


def _checked_details(details: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in details.items():
        words = key.lower()
        if any(word in words for word in _FORBIDDEN_KEY_WORDS):
            raise ValueError(f"audit details must not hold {key!r}")
        _check_value(key, value)
    checked = dict(details)
    # Counted as stored (UTF-8), not as escaped ASCII: escaping makes an emoji 12 bytes, and
    # the longest address the sign-in form takes, masked, would no longer fit.
    stored = json.dumps(checked, separators=(",", ":"), ensure_ascii=False).encode()
    if len(stored) > DETAILS_MAX_BYTES:
        raise ValueError(f"audit details are over {DETAILS_MAX_BYTES} bytes")
    return checked


def _check_value(key: str, value: Any, *, nested: bool = False) -> None:
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, list) and not nested:
        for item in value:
            _check_value(key, item, nested=True)
        return
    if isinstance(value, dict) and not nested:
        _checked_details(value)
        return
    raise ValueError(f"audit details[{key!r}] is not a JSON scalar, list or object")


def record(
    session: Session,
    type: str,
    *,
    actor_id: uuid.UUID | None,
    subject_id: uuid.UUID | None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Add an event to the session's transaction: it commits with the change, or is never
    there. The caller commits."""
    if type not in _declared:
        raise ValueError(f"no feature declares the audit event type {type!r}")
    where = request_origin.get()
    session.add(
        AuditEvent(
            type=type,
            actor_id=actor_id,
            subject_id=subject_id,
            client_ip=where.client_ip if where else None,
            user_agent=where.user_agent if where else None,
            details=_checked_details(details or {}),
        )
    )


# --- retention ---------------------------------------------------------------------------

PURGE_BATCH_SIZE = 1000


def purge_before(session: Session, cutoff: datetime, *, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete up to `batch_size` of the oldest events from before `cutoff` and commit; how
    many went. Called until it returns less than `batch_size`, so no transaction holds more
    than one batch's locks however far behind the purge is."""
    oldest = (
        select(AuditEvent.id)
        .where(col(AuditEvent.created_at) < cutoff)
        .order_by(col(AuditEvent.created_at))
        .limit(batch_size)
    )
    deleted = changed_rows(session, delete(AuditEvent).where(col(AuditEvent.id).in_(oldest)))
    session.commit()
    return deleted
