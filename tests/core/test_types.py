"""The patterns the OpenAPI document publishes for the shared field types say exactly what
their validators accept, so a generated client refuses what the server refuses and nothing
else. Checked on generated text over all of Unicode, and on the cases that matter."""

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from sqlmodel import Field

from core.data.types import (
    EMAIL_PATTERN,
    CleanStr,
    Email,
    NonBlankStr,
    Password,
)

EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True, database=None)


class Typed(BaseModel):
    clean: CleanStr = ""
    name: NonBlankStr = Field(default="x", min_length=1)
    password: Password = "long-enough"
    email: Email = "someone@example.com"


def published(field: str) -> dict[str, Any]:
    schema: dict[str, Any] = Typed.model_json_schema()["properties"][field]
    return schema


def accepted(**fields: str) -> bool:
    try:
        Typed(**fields)
    except ValidationError:
        return False
    return True


def matches(field: str, value: str) -> bool:
    """What a JSON Schema validator decides for the published string schema."""
    schema = published(field)
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
        return False
    # JSON Schema patterns are unanchored searches; these anchor themselves.
    return re.search(schema["pattern"], value) is not None


# Text over all of Unicode, weighted towards what the rules are about: controls, whitespace.
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(
            "\x00\x01\x0b\x0c\x1c\x1f\x7f\t\n\r \x85\xa0\u2000\u200b\u2028\u3000\ufeff"
        ),
    ),
    max_size=12,
)


@EXAMPLES
@given(TEXT)
def test_clean_text_pattern_is_the_validator(value: str) -> None:
    assert matches("clean", value) == accepted(clean=value), repr(value)


@EXAMPLES
@given(TEXT)
def test_name_pattern_is_the_validator(value: str) -> None:
    assert matches("name", value) == accepted(name=value), repr(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Ada", True),
        (" Ada ", True),
        ("", False),
        ("   ", False),
        ("\u3000\xa0", False),
        ("\t\n", False),
        ("A\x00", False),
        ("\x85", False),
        ("\u200b", True),
    ],
)
def test_blank_and_control_names_are_refused_by_both(value: str, ok: bool) -> None:
    assert accepted(name=value) is ok
    assert matches("name", value) is ok


@EXAMPLES
@given(st.text(st.characters(codec="ascii"), min_size=0, max_size=80))
def test_password_pattern_and_lengths_are_the_validator_for_single_byte_text(value: str) -> None:
    # In ASCII a character is a byte, so the schema's character limits are the byte limit.
    assert matches("password", value) == accepted(password=value), repr(value)


def test_the_byte_limit_is_stricter_than_the_schema_can_say() -> None:
    # 25 euro signs: 25 characters, within the schema's maxLength, but 75 bytes in UTF-8.
    assert matches("password", "€" * 25)
    assert not accepted(password="€" * 25)
    assert "bytes" in published("password")["description"]


def test_eight_characters_are_enough_whatever_their_bytes() -> None:
    assert accepted(password="ü" * 8)
    assert not accepted(password="ü" * 7)
    assert matches("password", "ü" * 8)
    assert not matches("password", "ü" * 7)


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com",
        "first.last@sub.example.org",
        "a@x.test",
        "a@X.TEST",
        "a@x.local",
        "a@localhost",
        "a@x.invalid",
        "a@x.onion",
        "a@in-addr.arpa",
        "a@testing.io",
        "a@mylocalhost.dev",
    ],
)
def test_email_pattern_refuses_the_special_use_domains_the_validator_refuses(
    address: str,
) -> None:
    assert (re.search(EMAIL_PATTERN, address) is not None) == accepted(email=address), address
