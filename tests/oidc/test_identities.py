"""An account's linked provider accounts: listed, linked from the account through the same
flow, unlinked unless that would leave no way to sign in."""

import uuid
from collections.abc import Callable

from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from core.data.audit import AuditEvent
from tests.conftest import Account
from tests.oidc.conftest import FRONTEND, PROVIDER_NAME, Browser, Rows, query_of

API = "/api/v1"
IDENTITIES = f"{API}/users/me/identities"


def link(browser: Browser, headers: dict[str, str], *, sub: str) -> dict[str, str]:
    """Link the provider account `sub` from the account `headers` sign in; what the frontend
    gets back."""
    started = browser.app.post(
        f"{IDENTITIES}/{PROVIDER_NAME}", json={"redirect_uri": FRONTEND}, headers=headers
    )
    assert started.status_code == 200, started.text
    assert set(started.json()) == {"authorization_url"}
    # The attempt is bound to this browser, as a sign-in is.
    assert started.headers["set-cookie"].startswith("oidc_browser=")
    callback = browser.at_provider(
        started.json()["authorization_url"], sub=sub, email="whatever@example.org"
    )
    return browser.back_at_frontend(callback)


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
    assert link(browser, account.headers, sub="linked-sub") == {"linked": PROVIDER_NAME}

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
    assert link(browser, owner.headers, sub="contested") == {"linked": PROVIDER_NAME}

    assert link(browser, other.headers, sub="contested") == {"error": "identity_in_use"}
    (identity,) = rows.identities()
    assert str(identity.user_id) == owner.id
    assert browser.app.get(IDENTITIES, headers=other.headers).json() == []


def test_linking_again_changes_nothing(browser: Browser, account: Account, rows: Rows) -> None:
    assert link(browser, account.headers, sub="again") == {"linked": PROVIDER_NAME}
    assert link(browser, account.headers, sub="again") == {"linked": PROVIDER_NAME}
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
    assert link(browser, account.headers, sub="spare") == {"linked": PROVIDER_NAME}
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
    assert link(browser, owner.headers, sub="owned") == {"linked": PROVIDER_NAME}
    (identity,) = browser.app.get(IDENTITIES, headers=owner.headers).json()

    for identity_id in (identity["id"], str(uuid.uuid4())):
        response = browser.app.delete(f"{IDENTITIES}/{identity_id}", headers=other.headers)
        assert response.status_code == 404
    assert len(rows.identities()) == 1


def test_the_link_response_carries_only_the_url(browser: Browser, account: Account) -> None:
    started = browser.app.post(
        f"{IDENTITIES}/{PROVIDER_NAME}", json={"redirect_uri": FRONTEND}, headers=account.headers
    )
    query = query_of(started.json()["authorization_url"])
    assert query["code_challenge_method"] == "S256"
    assert "code_verifier" not in query
    assert "client_secret" not in query
