"""An account's linked provider accounts: listed, linked from the account through the same
flow, unlinked unless that would leave no way to sign in."""

import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx2
from sqlalchemy import update
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from core.data.audit import AuditEvent
from core.data.clock import utc_now
from features.users.models import AccountSession, User
from tests.conftest import Account
from tests.oidc.conftest import FRONTEND, PROVIDER_NAME, Browser, Rows, query_of

API = "/api/v1"
IDENTITIES = f"{API}/users/me/identities"


def start_link(
    browser: Browser, headers: dict[str, str], current_password: str | None = None
) -> httpx2.Response:
    body = {"redirect_uri": FRONTEND}
    if current_password is not None:
        body["current_password"] = current_password
    return browser.app.post(f"{IDENTITIES}/{PROVIDER_NAME}", json=body, headers=headers)


def link(
    browser: Browser, headers: dict[str, str], *, sub: str, current_password: str | None = None
) -> dict[str, str]:
    """Link the provider account `sub` from the account `headers` sign in (with its
    password, if it has one); what the frontend gets back."""
    started = start_link(browser, headers, current_password)
    assert started.status_code == 200, started.text
    assert set(started.json()) == {"authorization_url"}
    # The attempt is bound to this browser, as a sign-in is.
    assert started.headers["set-cookie"].startswith("oidc_browser=")
    callback = browser.at_provider(
        started.json()["authorization_url"], sub=sub, email="whatever@example.org"
    )
    return browser.back_at_frontend(callback)


def link_from(browser: Browser, account: Account, *, sub: str) -> dict[str, str]:
    """`link`, from an account with a password."""
    return link(browser, account.headers, sub=sub, current_password=account.password)


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def signed_in_through_provider(browser: Browser, *, sub: str, email: str) -> dict[str, str]:
    code = browser.sign_in(sub=sub, email=email)["code"]
    tokens: dict[str, str] = browser.exchange(code).json()
    return tokens


def test_a_signed_in_account_links_a_provider_account(
    browser: Browser, account: Account, rows: Rows, session_factory: Callable[[], Session]
) -> None:
    # The provider's address needs no verification here: the owner proved both ends.
    assert link_from(browser, account, sub="linked-sub") == {"linked": PROVIDER_NAME}

    (identity,) = rows.identities()
    assert (str(identity.user_id), identity.subject) == (account.id, "linked-sub")
    listed = browser.app.get(IDENTITIES, headers=account.headers)
    assert listed.status_code == 200
    assert [(item["provider"], item["subject"]) for item in listed.json()] == [
        (PROVIDER_NAME, "linked-sub")
    ]
    # No code on a link: it signs nobody in.
    assert rows.codes() == []
    with session_factory() as session:
        details = session.exec(
            select(AuditEvent.details).where(AuditEvent.type == "oidc.identity_linked")
        ).one()
    assert details["how"] == "from_account"
    # From now on the provider signs the account in.
    tokens = signed_in_through_provider(browser, sub="linked-sub", email="other@example.org")
    assert browser.app.get(f"{API}/users/me", headers=bearer(tokens)).json()["id"] == account.id


def test_an_identity_of_another_account_is_not_taken_over(
    browser: Browser, make_account: Callable[..., Account], rows: Rows
) -> None:
    owner, other = make_account(), make_account()
    assert link_from(browser, owner, sub="contested") == {"linked": PROVIDER_NAME}

    assert link_from(browser, other, sub="contested") == {"error": "identity_in_use"}
    (identity,) = rows.identities()
    assert str(identity.user_id) == owner.id
    assert browser.app.get(IDENTITIES, headers=other.headers).json() == []


def test_linking_again_changes_nothing(browser: Browser, account: Account, rows: Rows) -> None:
    assert link_from(browser, account, sub="again") == {"linked": PROVIDER_NAME}
    assert link_from(browser, account, sub="again") == {"linked": PROVIDER_NAME}
    assert len(rows.identities()) == 1


def test_linking_needs_a_signed_in_session(client: TestClient) -> None:
    response = client.post(f"{IDENTITIES}/{PROVIDER_NAME}", json={"redirect_uri": FRONTEND})
    assert response.status_code == 401


def test_the_last_way_to_sign_in_cannot_be_unlinked(browser: Browser, rows: Rows) -> None:
    tokens = signed_in_through_provider(browser, sub="only-way", email="only.way@example.com")
    (identity,) = browser.app.get(IDENTITIES, headers=bearer(tokens)).json()

    refused = browser.app.delete(f"{IDENTITIES}/{identity['id']}", headers=bearer(tokens))

    assert refused.status_code == 409
    assert "only way to sign in" in refused.json()["detail"]
    assert len(rows.identities()) == 1


def test_an_identity_unlinks_when_another_way_remains(
    browser: Browser, account: Account, rows: Rows, session_factory: Callable[[], Session]
) -> None:
    # The account has a password.
    assert link_from(browser, account, sub="spare") == {"linked": PROVIDER_NAME}
    (identity,) = browser.app.get(IDENTITIES, headers=account.headers).json()

    response = browser.app.delete(f"{IDENTITIES}/{identity['id']}", headers=account.headers)

    assert response.status_code == 204
    assert rows.identities() == []
    with session_factory() as session:
        types = session.exec(
            select(AuditEvent.type).order_by(col(AuditEvent.created_at), col(AuditEvent.id))
        ).all()
    assert types[-1] == "oidc.identity_unlinked"
    # And a password-less account with two identities may drop one of them.
    tokens = signed_in_through_provider(browser, sub="first-of-two", email="two@example.com")
    assert link(browser, bearer(tokens), sub="second-of-two") == {"linked": PROVIDER_NAME}
    first, second = browser.app.get(IDENTITIES, headers=bearer(tokens)).json()
    assert (
        browser.app.delete(f"{IDENTITIES}/{first['id']}", headers=bearer(tokens)).status_code == 204
    )
    assert (
        browser.app.delete(f"{IDENTITIES}/{second['id']}", headers=bearer(tokens)).status_code
        == 409
    )


def test_another_accounts_identity_is_a_404(
    browser: Browser, make_account: Callable[..., Account], rows: Rows
) -> None:
    owner, other = make_account(), make_account()
    assert link_from(browser, owner, sub="owned") == {"linked": PROVIDER_NAME}
    (identity,) = browser.app.get(IDENTITIES, headers=owner.headers).json()

    for identity_id in (identity["id"], str(uuid.uuid4())):
        response = browser.app.delete(f"{IDENTITIES}/{identity_id}", headers=other.headers)
        assert response.status_code == 404
    assert len(rows.identities()) == 1


def test_the_link_response_carries_only_the_url(browser: Browser, account: Account) -> None:
    started = start_link(browser, account.headers, account.password)
    query = query_of(started.json()["authorization_url"])
    assert query["code_challenge_method"] == "S256"
    assert "code_verifier" not in query
    assert "client_secret" not in query


# --- proof and a live session ------------------------------------------------------------------


def test_linking_an_account_with_a_password_needs_it(
    browser: Browser, account: Account, rows: Rows
) -> None:
    # A stolen access token alone must not attach the thief's provider account.
    missing = start_link(browser, account.headers)
    assert missing.status_code == 400
    assert missing.json() == {
        "detail": "current_password is required to link a provider to this account"
    }
    wrong = start_link(browser, account.headers, "not-the-password")
    assert wrong.status_code == 400
    assert wrong.json() == {"detail": "Current password is incorrect"}
    assert rows.attempts() == []


def signed_in_ago(session_factory: Callable[[], Session], ago: timedelta) -> None:
    """Every session signed in `ago`."""
    with session_factory() as session:
        session.execute(update(AccountSession).values(created_at=utc_now() - ago))
        session.commit()


def test_an_account_without_a_password_links_only_soon_after_signing_in(
    browser: Browser, rows: Rows, session_factory: Callable[[], Session]
) -> None:
    tokens = signed_in_through_provider(browser, sub="fresh", email="fresh@example.com")
    signed_in_ago(session_factory, timedelta(minutes=11))

    stale = start_link(browser, bearer(tokens))

    assert stale.status_code == 403
    assert "Sign in again" in stale.json()["detail"]
    assert rows.attempts() == []
    # Nine minutes after signing in, it may.
    signed_in_ago(session_factory, timedelta(minutes=9))
    assert start_link(browser, bearer(tokens)).status_code == 200


def test_a_link_is_refused_when_its_session_ended_meanwhile(
    browser: Browser, account: Account, rows: Rows
) -> None:
    started = start_link(browser, account.headers, account.password)
    assert started.status_code == 200
    signed_out = browser.app.post(
        f"{API}/auth/logout", json={"refresh_token": account.refresh_token}
    )
    assert signed_out.status_code == 204

    callback = browser.at_provider(started.json()["authorization_url"], sub="late", email=None)

    assert browser.back_at_frontend(callback) == {"error": "session_ended"}
    assert rows.identities() == []


def test_a_link_is_refused_when_the_password_changed_meanwhile(
    browser: Browser, account: Account, rows: Rows
) -> None:
    started = start_link(browser, account.headers, account.password)
    change = {"current_password": account.password, "new_password": "a-brand-new-password"}
    changed = browser.app.post(f"{API}/users/me/password", json=change, headers=account.headers)
    assert changed.status_code == 204

    callback = browser.at_provider(started.json()["authorization_url"], sub="late", email=None)

    assert browser.back_at_frontend(callback) == {"error": "session_ended"}
    assert rows.identities() == []


def test_a_link_is_refused_when_the_token_version_moved_meanwhile(
    browser: Browser, account: Account, rows: Rows, session_factory: Callable[[], Session]
) -> None:
    # Whatever revoked every token of the account (the session row itself left alone).
    started = start_link(browser, account.headers, account.password)
    with session_factory() as session:
        session.execute(
            update(User)
            .where(col(User.id) == uuid.UUID(account.id))
            .values(token_version=User.token_version + 1)
        )
        session.commit()

    callback = browser.at_provider(started.json()["authorization_url"], sub="late", email=None)

    assert browser.back_at_frontend(callback) == {"error": "session_ended"}
    assert rows.identities() == []
