"""OIDC_PROVIDERS as settings: issuers over TLS unless on this machine, one name each, the
client secret from the entry, the environment or SECRETS_DIR."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import Settings


def settings_with(*entries: dict[str, object]) -> Settings:
    return Settings(_env_file=None, OIDC_PROVIDERS=json.dumps(list(entries)))


def entry(**changes: object) -> dict[str, object]:
    return {
        "name": "corp",
        "issuer": "https://login.example.com",
        "client_id": "app",
        "client_secret": "s3cret-value",
        **changes,
    }


@pytest.mark.parametrize(
    "issuer",
    ["https://login.example.com", "http://127.0.0.1:8080", "http://localhost:9000", "http://[::1]"],
)
def test_an_issuer_is_https_or_on_a_loopback_address(issuer: str) -> None:
    (provider,) = settings_with(entry(issuer=issuer)).OIDC_PROVIDERS
    assert provider.issuer == issuer


@pytest.mark.parametrize(
    "issuer",
    [
        "http://login.example.com",
        "http://10.0.0.5",
        "http://127.0.0.1.example.com",
        "ftp://login.example.com",
        "login.example.com",
    ],
)
def test_any_other_issuer_is_refused_at_start_up(issuer: str) -> None:
    with pytest.raises(ValidationError, match="https"):
        settings_with(entry(issuer=issuer))


def test_names_are_url_safe_and_unique() -> None:
    with pytest.raises(ValidationError):
        settings_with(entry(name="Not Safe/"))
    with pytest.raises(ValidationError, match="each name at most once"):
        settings_with(entry(), entry())


def test_the_openid_scope_is_required() -> None:
    with pytest.raises(ValidationError, match="openid"):
        settings_with(entry(scopes=["email"]))


def test_the_secret_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_CORP_EU_CLIENT_SECRET", "from-the-environment")
    without = {key: value for key, value in entry(name="corp-eu").items() if key != "client_secret"}
    (provider,) = settings_with(without).OIDC_PROVIDERS
    assert provider.client_secret.get_secret_value() == "from-the-environment"
    # Never shown by the settings' repr (logs, error reports).
    assert "from-the-environment" not in repr(provider)


def test_the_secret_may_come_from_the_secrets_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "OIDC_CORP_CLIENT_SECRET").write_text("from-a-mounted-file\n")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("OIDC_CORP_CLIENT_SECRET", raising=False)
    without = {key: value for key, value in entry().items() if key != "client_secret"}
    (provider,) = settings_with(without).OIDC_PROVIDERS
    assert provider.client_secret.get_secret_value() == "from-a-mounted-file"


def test_a_provider_without_a_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OIDC_CORP_CLIENT_SECRET", raising=False)
    monkeypatch.delenv("SECRETS_DIR", raising=False)
    without = {key: value for key, value in entry().items() if key != "client_secret"}
    with pytest.raises(ValidationError, match="OIDC_CORP_CLIENT_SECRET"):
        settings_with(without)


@pytest.mark.parametrize(
    "uri",
    [
        "/relative",
        "app.example/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "https:/x",
        "https://a/b#x",
    ],
)
def test_redirect_uris_are_absolute_urls_to_return_to(uri: str) -> None:
    with pytest.raises(ValidationError, match="OIDC_REDIRECT_URIS"):
        Settings(_env_file=None, OIDC_REDIRECT_URIS=uri)


def test_redirect_uris_are_a_list_of_web_pages_or_app_schemes() -> None:
    given = "https://a.example/cb, com.example.app:/oauth"
    settings = Settings(_env_file=None, OIDC_REDIRECT_URIS=given)
    assert settings.OIDC_REDIRECT_URIS == ["https://a.example/cb", "com.example.app:/oauth"]
