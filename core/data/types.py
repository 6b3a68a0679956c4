"""Field types shared by every feature's schemas."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from core.data.clock import as_utc
from core.security import password_byte_length_error


def _reject_control_characters(value: str) -> str:
    # PostgreSQL refuses NUL in text (a 500 if it got that far); other control characters in
    # names and titles are never intended and make logs and UIs lie.
    if any(ord(char) < 32 and char not in "\t\n\r" for char in value):
        raise ValueError("must not contain control characters")
    return value


def _check_password(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    error = password_byte_length_error(value)
    if error:
        raise ValueError(error)
    return value


# Text a person typed: trimmed, no control characters.
CleanStr = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_reject_control_characters)
]
# 8 to 72 bytes in UTF-8: bcrypt ignores everything past 72, so longer is refused, not cut.
# The character cap rejects megabyte-sized inputs before anything else looks at them.
Password = Annotated[
    str,
    Field(max_length=72, json_schema_extra={"format": "password"}),
    AfterValidator(_check_password),
]
# Every stored time is UTC; the JSON says so, whatever the database handed back.
UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]
