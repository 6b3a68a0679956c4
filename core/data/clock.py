"""The one clock every feature reads, and the one rule for times read back from a database."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC, with its time zone: every stored time is UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time made time-zone aware. SQLite hands datetimes back naive; they were
    written in UTC, so they are read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
