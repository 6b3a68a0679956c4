"""Field types shared by every feature's schemas."""

from datetime import datetime
from typing import Annotated, Any

import email_validator
from pydantic import AfterValidator, EmailStr, Field, StringConstraints

from core.data.clock import as_utc
from core.security import PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARACTERS, password_length_error

# The published schema states each rule the validators below enforce, as a pattern, so that
# generated clients refuse what the server refuses. They are written with explicit ranges, not
# `\s`, so that they mean the same in ECMAScript (OpenAPI's regex dialect) and Python, and
# tests/core/test_types.py holds the validators and the patterns to each other.
# The control characters refused in text a person typed: all below U+0020 but tab, LF, CR.
_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f"
# What pydantic's strip_whitespace removes: Unicode's White_Space characters.
_WHITESPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The validators strip surrounding whitespace first (some control characters are whitespace
# too), then refuse any control character left; so do the patterns: whitespace around, and
# inside it nothing but text that has no control character and ends in no whitespace.
_TRIMMED = f"[^{_CONTROL}]*[^{_CONTROL}{_WHITESPACE}]"
CLEAN_TEXT_PATTERN = f"^[{_WHITESPACE}]*(?:{_TRIMMED})?[{_WHITESPACE}]*$"
# The same, and not blank: something is left once surrounding whitespace is stripped.
NON_BLANK_TEXT_PATTERN = f"^[{_WHITESPACE}]*{_TRIMMED}[{_WHITESPACE}]*$"
# A password: no NUL (the database and bcrypt cannot take one).
PASSWORD_PATTERN = "^[^\\x00]*$"  # noqa: S105 - a pattern, not a secret


def _reject_control_characters(value: str) -> str:
    # PostgreSQL refuses NUL in text (a 500 if it got that far); other control characters in
    # names and titles are never intended and make logs and UIs lie.
    if any(ord(char) < 32 and char not in "\t\n\r" for char in value):
        raise ValueError("must not contain control characters")
    return value


def _check_password(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    error = password_length_error(value)
    if error:
        raise ValueError(error)
    return value


# Text a person typed: trimmed, no control characters. The schema cannot say that its length
# limits count after trimming: it counts them on the text as sent, which is stricter.
CleanStr = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_reject_control_characters),
    Field(json_schema_extra={"pattern": CLEAN_TEXT_PATTERN}),
]
# The same, never blank: a name. (Give it min_length=1: an empty string is blank too.)
NonBlankStr = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_reject_control_characters),
    Field(json_schema_extra={"pattern": NON_BLANK_TEXT_PATTERN}),
]
# At least 8 characters and at most 72 bytes in UTF-8: bcrypt ignores everything past 72 bytes,
# so longer is refused, not cut. OpenAPI counts lengths in characters only, so the schema says
# maxLength 72, which 72 bytes never exceed, and the byte limit is checked here and in the
# field's description.
Password = Annotated[
    str,
    Field(
        max_length=PASSWORD_MAX_BYTES,
        description=f"{PASSWORD_MIN_CHARACTERS} characters or more, at most "
        f"{PASSWORD_MAX_BYTES} bytes in UTF-8",
        # The minimum is checked with the byte limit below (one error for both), and
        # published here.
        json_schema_extra={
            "format": "password",
            "minLength": PASSWORD_MIN_CHARACTERS,
            "pattern": PASSWORD_PATTERN,
        },
    ),
    AfterValidator(_check_password),
]


def _in_any_case(word: str) -> str:
    # JSON Schema patterns take no flags: each letter matches both cases.
    return "".join(f"[{char.lower()}{char.upper()}]" if char.isalpha() else char for char in word)


# An address as the server takes it (pydantic's EmailStr, through email-validator): besides
# the format, one "@" (no quoted local parts) and no special-use domain (`.test`, `.local`,
# `localhost`, ...), which email-validator refuses. The rest of its rules (the characters of
# each part, label lengths, internationalized names) OpenAPI's `format: email` stands for.
_SPECIAL_USE_DOMAINS = "|".join(
    _in_any_case(name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES
)
EMAIL_PATTERN = f"^[^@]+@(?!(?:[^@]*\\.)?(?:{_SPECIAL_USE_DOMAINS})$)[^@]+$"
Email = Annotated[EmailStr, Field(json_schema_extra={"pattern": EMAIL_PATTERN})]

# A secret this API issued (a refresh token, a one-time link): URL-safe base64, no padding.
# The pattern is published only: the server answers any other string as it answers a wrong
# token (it is one), so clients may check the alphabet first and lose nothing.
OPAQUE_TOKEN_PATTERN = "^[A-Za-z0-9_-]+$"  # noqa: S105 - a pattern, not a secret


def opaque_token_field(max_length: int, description: str | None = None) -> Any:
    """The field of a token this API issued, up to `max_length` characters."""
    return Field(
        min_length=1,
        max_length=max_length,
        description=description,
        json_schema_extra={"pattern": OPAQUE_TOKEN_PATTERN},
    )


# Every stored time is UTC; the JSON says so, whatever the database handed back.
UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]
