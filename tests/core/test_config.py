import re
from typing import Any

import pytest
from pydantic import ValidationError

from core.config import Settings
from tests.conftest import ROOT


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


class TestSecretKey:
    @pytest.mark.parametrize("key", ["", "changethis", "dev-secret-key", "short-but-random-123"])
    def test_production_refuses_a_missing_default_or_short_key(self, key: str) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            settings(ENVIRONMENT="production", SECRET_KEY=key)

    def test_production_accepts_a_long_random_key(self) -> None:
        key = "k" * 16 + "0123456789abcdef0123456789"
        assert key == settings(ENVIRONMENT="production", SECRET_KEY=key).SECRET_KEY

    def test_local_development_runs_with_the_default_key(self) -> None:
        assert settings(ENVIRONMENT="local").SECRET_KEY


class TestCorsOrigins:
    def test_comma_separated(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
        assert settings().CORS_ORIGINS == ["https://a.example", "https://b.example"]

    def test_json_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CORS_ORIGINS", '["https://a.example"]')
        assert settings().CORS_ORIGINS == ["https://a.example"]

    def test_exposed_headers_are_the_documented_ones_unless_set(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert settings().CORS_EXPOSE_HEADERS == [
            "Retry-After",
            "X-Request-ID",
            "ETag",
            "WWW-Authenticate",
        ]
        monkeypatch.setenv("CORS_EXPOSE_HEADERS", "ETag, X-Custom")
        assert settings().CORS_EXPOSE_HEADERS == ["ETag", "X-Custom"]
        monkeypatch.setenv("CORS_EXPOSE_HEADERS", '["Retry-After"]')
        assert settings().CORS_EXPOSE_HEADERS == ["Retry-After"]


def test_every_setting_is_in_env_example_with_a_comment() -> None:
    """.env.example is where operators read what they can set: a setting missing there is
    one nobody knows about."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name in Settings.model_fields:
        at = [i for i, line in enumerate(lines) if re.match(rf"^#?\s*{name}=", line)]
        assert at, f"{name} is not in .env.example"
        above = at[0] - 1
        while above >= 0 and re.match(r"^[A-Z_]+=", lines[above]):
            above -= 1  # settings grouped under one comment
        assert above >= 0, f"{name} has no comment above it"
        assert lines[above].startswith("#"), f"{name} has no comment above it"
