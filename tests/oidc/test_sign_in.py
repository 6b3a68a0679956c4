"""Signing in through a real OpenID Connect provider, end to end."""

from tests.oidc.conftest import Browser, Rows


def test_a_verified_email_nobody_has_makes_a_verified_account_without_password(
    browser: Browser, rows: Rows
) -> None:
    back = browser.sign_in(sub="new-person", email="new.person@example.com")
    assert set(back) == {"code"}
    tokens = browser.exchange(back["code"])
    assert tokens.status_code == 200, tokens.text
    (user,) = rows.users("new.person@example.com")
    assert user.is_verified
    assert user.hashed_password is None
