"""Attacks on the OpenID Connect flow, each refused with nothing created and nothing linked:
forged or replayed state, ID tokens a misbehaving provider re-signed with one thing wrong,
replayed or stale one-time codes, redirects to anywhere but a registered URI."""

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx2
import pytest
from sqlalchemy import Executable, event, func, insert, update
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from core.data.audit import AuditEvent
from core.data.clock import utc_now
from core.data.db import Database
from features.oidc.models import ExchangeCode, Identity
from features.oidc.router import BROWSER_COOKIE, HOST_BROWSER_COOKIE
from features.users.models import AccountSession, User
from main import create_app
from tests.conftest import Account, make_settings
from tests.oidc.conftest import (
    CLIENT_ID,
    FRONTEND,
    HTTPS_CALLBACK,
    PKCE,
    PROVIDER_NAME,
    Browser,
    OidcProvider,
    Rows,
    pkce_pair,
    provider_settings,
    query_of,
)
from tests.support import free_port

API = "/api/v1"


def assert_nothing_made(rows: Rows, *emails: str) -> None:
    assert rows.identities() == []
    assert rows.codes() == []
    for email in emails:
        assert rows.users(email) == []


# --- the ID token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper", ["other_key", "unknown_kid", "wrong_aud", "wrong_iss", "expired", "wrong_nonce"]
)
def test_an_id_token_with_one_thing_wrong_is_refused(
    browser: Browser, rows: Rows, tamper: str
) -> None:
    back = browser.sign_in(sub=f"forged-{tamper}", email="forged@example.com", tamper=tamper)
    assert back == {"error": "invalid_id_token"}
    assert_nothing_made(rows, "forged@example.com")


def test_an_id_token_with_one_thing_wrong_never_links_a_signed_in_account(
    browser: Browser, account: Account, rows: Rows
) -> None:
    started = browser.app.post(
        f"{API}/users/me/identities/{PROVIDER_NAME}",
        json={"redirect_uri": FRONTEND, "current_password": account.password},
        headers=account.headers,
    )
    assert started.status_code == 200
    callback = browser.at_provider(
        started.json()["authorization_url"], sub="forged", email=None, tamper="wrong_aud"
    )
    assert browser.back_at_frontend(callback) == {"error": "invalid_id_token"}
    assert rows.identities() == []


@pytest.mark.parametrize(
    ("sub", "email"),
    [("s" * 256, "long.subject@example.com"), ("long-email", "e" * 243 + "@example.com")],
    ids=["subject", "email"],
)
def test_an_id_token_claim_longer_than_its_column_is_an_invalid_id_token(
    browser: Browser, rows: Rows, sub: str, email: str
) -> None:
    assert browser.sign_in(sub=sub, email=email) == {"error": "invalid_id_token"}
    assert_nothing_made(rows, "long.subject@example.com", email)
    # At their limits, they are fine.
    back = browser.sign_in(sub="s" * 255, email="e" * 242 + "@example.com")
    assert set(back) == {"code"}


@contextmanager
def racing(statement: Executable) -> Iterator[None]:
    """Another request runs `statement` just before the app's next flush of new rows: the
    moment a check-then-insert race is lost, made deterministic."""

    done = False

    def first_flush(session: Session, _context: object, _instances: object) -> None:
        nonlocal done
        if session.new and not done:
            done = True
            session.execute(statement)

    event.listen(Session, "before_flush", first_flush)
    try:
        yield
    finally:
        event.remove(Session, "before_flush", first_flush)
    assert done


def test_an_account_made_meanwhile_by_another_sign_in_is_an_error_redirect(
    browser: Browser, rows: Rows
) -> None:
    callback = browser.at_provider(browser.authorize(), sub="twin", email="twin@example.com")
    twin = User(name="Twin", email="twin@example.com", hashed_password=None, is_verified=True)

    with racing(insert(User).values(**twin.model_dump())):
        response = browser.callback(callback)

    assert response.status_code == 302
    assert query_of(response.headers["location"]) == {"error": "try_again"}
    assert rows.identities() == []
    assert rows.codes() == []


def test_an_identity_linked_meanwhile_by_another_callback_is_an_error_redirect(
    browser: Browser, account: Account, rows: Rows
) -> None:
    callback = browser.at_provider(browser.authorize(), sub="raced", email="raced@example.com")
    other = Identity(user_id=uuid.UUID(account.id), provider=PROVIDER_NAME, subject="raced")

    with racing(insert(Identity).values(**other.model_dump())):
        response = browser.callback(callback)

    assert response.status_code == 302
    assert query_of(response.headers["location"]) == {"error": "try_again"}
    assert rows.users("raced@example.com") == []
    assert rows.codes() == []


def forge_with_unknown_key_ids(browser: Browser, oidc_provider: OidcProvider) -> int:
    """Three sign-ins whose ID tokens name a key id the provider never published; how many
    times the app fetched the keys meanwhile (after its first fetch, which an authorize
    step waits for)."""
    browser.authorize()
    before = oidc_provider.jwks_fetches()
    for attempt in range(3):
        back = browser.sign_in(sub=f"rotated-{attempt}", email=None, tamper="unknown_kid")
        assert back == {"error": "invalid_id_token"}
    return oidc_provider.jwks_fetches() - before


@pytest.mark.parametrize("extra_settings", [{"OIDC_JWKS_REFETCH_SECONDS": 0}])
def test_an_unknown_key_id_fetches_the_keys_again(
    browser: Browser, oidc_provider: OidcProvider, rows: Rows
) -> None:
    # The provider may have rotated its keys: each unknown key id looks again (the interval
    # is 0 here), and a key that is still not there is refused.
    assert forge_with_unknown_key_ids(browser, oidc_provider) == 3
    assert_nothing_made(rows)


@pytest.mark.parametrize("extra_settings", [{"OIDC_JWKS_REFETCH_SECONDS": 3600}])
def test_unknown_key_ids_fetch_the_keys_at_most_once_per_interval(
    browser: Browser, oidc_provider: OidcProvider, rows: Rows
) -> None:
    # The keys were fetched at start-up, within the interval: forged key ids cost no fetch.
    assert forge_with_unknown_key_ids(browser, oidc_provider) == 0
    assert_nothing_made(rows)


# --- state and the browser binding -------------------------------------------------------------


def test_a_replayed_state_is_refused_without_a_redirect(browser: Browser, rows: Rows) -> None:
    callback = browser.at_provider(browser.authorize(), sub="once", email="once@example.com")
    first = browser.back_at_frontend(callback)
    assert browser.exchange(first["code"]).status_code == 200

    replayed = browser.callback(callback)

    assert replayed.status_code == 400
    assert replayed.json() == {"detail": "Unknown or expired sign-in attempt: start again"}
    assert len(rows.codes()) == 1


def test_a_made_up_or_missing_state_is_refused(client: TestClient, rows: Rows) -> None:
    callback = f"{API}/auth/oidc/{PROVIDER_NAME}/callback"
    for params in ({"state": "made-up", "code": "x"}, {"code": "x"}, {}):
        response = client.get(callback, params=params, follow_redirects=False)
        assert response.status_code == 400
        assert "location" not in response.headers
    assert_nothing_made(rows)


def test_a_state_from_another_browser_is_refused(
    browser: Browser, make_browser: Callable[[], Browser], rows: Rows
) -> None:
    # The attacker begins a sign-in as themselves and makes the victim's browser finish it
    # (login CSRF): the victim's browser lacks the attacker's cookie.
    callback = browser.at_provider(browser.authorize(), sub="attacker", email="att@example.com")
    cookie = browser.app.cookies.get("oidc_browser", path=f"{API}/auth/oidc/{PROVIDER_NAME}")
    assert cookie
    browser.app.cookies.clear()

    assert browser.back_at_frontend(callback) == {"error": "invalid_state"}
    browser.app.cookies.set("oidc_browser", "x" * 43, path=f"{API}/auth/oidc/{PROVIDER_NAME}")
    assert browser.back_at_frontend(callback) == {"error": "invalid_state"}
    assert_nothing_made(rows, "att@example.com")

    # The browser that began it still can.
    browser.app.cookies.clear()
    browser.app.cookies.set("oidc_browser", cookie, path=f"{API}/auth/oidc/{PROVIDER_NAME}")
    assert set(browser.back_at_frontend(callback)) == {"code"}


def test_a_callback_to_an_unknown_provider_is_a_404(browser: Browser, rows: Rows) -> None:
    callback = browser.at_provider(browser.authorize(), sub="p", email="p@example.com")
    elsewhere = callback.replace(f"/oidc/{PROVIDER_NAME}/", "/oidc/unknown/")
    assert browser.callback(elsewhere).status_code == 404
    assert_nothing_made(rows, "p@example.com")


def test_a_state_begun_with_one_provider_is_refused_at_another(
    oidc_provider: OidcProvider,
    database_url: str,
    rows: Rows,
    session_factory: Callable[[], Session],
) -> None:
    two = [
        {"name": name, "issuer": oidc_provider.issuer, "client_id": CLIENT_ID, "client_secret": "x"}
        for name in (PROVIDER_NAME, "other")
    ]
    settings = make_settings(
        database_url, OIDC_PROVIDERS=json.dumps(two), OIDC_REDIRECT_URIS=FRONTEND
    )
    app = create_app(settings)
    app.state.database.dispose()
    app.state.database = Database(session_factory, max_threads=2, cache=app.state.cache)
    with TestClient(app, raise_server_exceptions=False) as client:
        browser = Browser(app=client, provider=httpx2.Client(follow_redirects=False))
        callback = browser.at_provider(browser.authorize(), sub="p", email="p@example.com")
        elsewhere = callback.replace(f"/oidc/{PROVIDER_NAME}/", "/oidc/other/")
        client.cookies.set(
            "oidc_browser",
            client.cookies.get("oidc_browser", path=f"{API}/auth/oidc/{PROVIDER_NAME}") or "",
            path=f"{API}/auth/oidc/other",
        )
        assert client.get(elsewhere, follow_redirects=False).status_code == 400
        browser.provider.close()
    app.state.database.dispose()
    assert_nothing_made(rows, "p@example.com")


def test_an_absurd_host_is_refused_before_anything_is_stored(
    client: TestClient, rows: Rows
) -> None:
    response = client.get(
        f"{API}/auth/oidc/{PROVIDER_NAME}/authorize",
        params={"redirect_uri": FRONTEND, **PKCE},
        headers={"Host": "h" * 2100 + ".example"},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert rows.attempts() == []


def test_an_expired_attempt_is_refused(
    browser: Browser, rows: Rows, session_factory: Callable[[], Session]
) -> None:
    callback = browser.at_provider(browser.authorize(), sub="slow", email="slow@example.com")
    (attempt,) = rows.attempts()
    with session_factory() as session:
        session.execute(
            update(type(attempt))
            .where(col(type(attempt).id) == attempt.id)
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )
        session.commit()
    assert browser.callback(callback).status_code == 400
    assert_nothing_made(rows, "slow@example.com")


# --- the one-time code -------------------------------------------------------------------------


def test_a_one_time_code_works_once(browser: Browser) -> None:
    code = browser.sign_in(sub="twice", email="twice@example.com")["code"]
    assert browser.exchange(code).status_code == 200
    replayed = browser.exchange(code)
    assert replayed.status_code == 400
    assert replayed.json() == {"detail": "Invalid, expired or already used code"}


def signed_in_sessions(session_factory: Callable[[], Session]) -> int:
    with session_factory() as session:
        return session.exec(select(func.count()).select_from(AccountSession)).one()


def test_a_code_without_its_verifier_is_refused_and_spent(
    browser: Browser, session_factory: Callable[[], Session]
) -> None:
    code = browser.sign_in(sub="no-verifier", email="no.verifier@example.com")["code"]
    missing = browser.app.post(f"{API}/auth/oidc/exchange", json={"code": code})
    assert missing.status_code == 400
    assert "code_verifier" in missing.json()["detail"]
    # Spent: even the right verifier is too late now.
    assert browser.exchange(code).status_code == 400
    assert signed_in_sessions(session_factory) == 0


def test_a_code_with_another_verifier_is_refused_and_spent(
    browser: Browser, session_factory: Callable[[], Session]
) -> None:
    code = browser.sign_in(sub="other-verifier", email="other.verifier@example.com")["code"]
    refused = browser.exchange(code, verifier=pkce_pair()[0])
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "code_verifier is missing or does not match the code_challenge given at the "
        "authorize step; the code is spent: sign in again"
    }
    assert browser.exchange(code).status_code == 400
    assert signed_in_sessions(session_factory) == 0


def test_an_attackers_code_traded_in_the_victims_app_signs_nobody_in(
    make_browser: Callable[[], Browser], session_factory: Callable[[], Session]
) -> None:
    # Login CSRF, or an app that registered the same custom scheme: the attacker's code
    # reaches the victim's frontend, which trades it with the verifier of its own attempt.
    attacker, victim = make_browser(), make_browser()
    attackers_code = attacker.sign_in(sub="attacker", email="attacker@example.com")["code"]
    victim.authorize()

    traded = victim.exchange(attackers_code, verifier=victim.code_verifier)

    assert traded.status_code == 400
    assert signed_in_sessions(session_factory) == 0
    with session_factory() as session:
        reasons = session.exec(
            select(AuditEvent.details).where(AuditEvent.type == "oidc.sign_in_refused")
        ).all()
    assert reasons == [{"provider": PROVIDER_NAME, "reason": "code_verifier_mismatch"}]


@pytest.mark.parametrize(
    "pkce",
    [
        {},
        {"code_challenge_method": "S256"},
        {"code_challenge": pkce_pair()[1]},
        {"code_challenge": pkce_pair()[1], "code_challenge_method": "plain"},
        {"code_challenge": "too-short", "code_challenge_method": "S256"},
        {"code_challenge": "x" * 43 + "=", "code_challenge_method": "S256"},
    ],
)
def test_authorize_requires_an_s256_challenge(
    client: TestClient, rows: Rows, pkce: dict[str, str]
) -> None:
    response = client.get(
        f"{API}/auth/oidc/{PROVIDER_NAME}/authorize",
        params={"redirect_uri": FRONTEND, **pkce},
        follow_redirects=False,
    )
    assert response.status_code == 422
    assert "location" not in response.headers
    assert rows.attempts() == []


def test_a_one_time_code_is_refused_after_its_minute(
    browser: Browser, session_factory: Callable[[], Session]
) -> None:
    code = browser.sign_in(sub="late", email="late@example.com")["code"]
    (issued,) = Rows(session_factory).codes()
    assert timedelta(seconds=50) < issued.expires_at - issued.created_at <= timedelta(seconds=60)
    with session_factory() as session:
        # A minute and a second later, as far as the code is concerned.
        session.execute(
            update(ExchangeCode)
            .where(col(ExchangeCode.id) == issued.id)
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )
        session.commit()
    assert browser.exchange(code).status_code == 400


def test_a_made_up_code_is_refused(client: TestClient) -> None:
    for code in ("made-up", "x" * 128):
        response = client.post(f"{API}/auth/oidc/exchange", json={"code": code})
        assert response.status_code == 400
    assert client.post(f"{API}/auth/oidc/exchange", json={"code": "x" * 129}).status_code == 422


@pytest.mark.parametrize("extra_settings", [{"OIDC_EXCHANGE_RATE_LIMIT": "2/minute"}])
def test_the_exchange_is_rate_limited_per_address(client: TestClient) -> None:
    answers = [
        client.post(f"{API}/auth/oidc/exchange", json={"code": f"guess-{n}"}) for n in range(3)
    ]
    assert [answer.status_code for answer in answers] == [400, 400, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1


@pytest.mark.parametrize("extra_settings", [{"OIDC_AUTHORIZE_RATE_LIMIT": "2/minute"}])
def test_sign_ins_and_links_begun_are_rate_limited_per_address(
    client: TestClient, account: Account, rows: Rows
) -> None:
    authorize = f"{API}/auth/oidc/{PROVIDER_NAME}/authorize"
    answers = [
        client.get(authorize, params={"redirect_uri": FRONTEND, **PKCE}, follow_redirects=False)
        for _ in range(3)
    ]
    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1
    # The link call counts against the same address's attempts.
    linking = client.post(
        f"{API}/users/me/identities/{PROVIDER_NAME}",
        json={"redirect_uri": FRONTEND, "current_password": account.password},
        headers=account.headers,
    )
    assert linking.status_code == 429
    assert len(rows.attempts()) == 2


# --- where the browser may be sent -------------------------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/auth/callback",
        "https://app.example/auth/callback/../../evil",
        "https://app.example/auth/callback?next=https://evil.example",
        "https://app.example/auth/callback.evil.example",
        "https://app.example.evil.example/auth/callback",
        "http://app.example/auth/callback",
        "//evil.example",
        "",
    ],
)
def test_a_redirect_uri_not_registered_is_refused(
    client: TestClient, account: Account, rows: Rows, redirect_uri: str
) -> None:
    response = client.get(
        f"{API}/auth/oidc/{PROVIDER_NAME}/authorize",
        params={"redirect_uri": redirect_uri, **PKCE},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    linking = client.post(
        f"{API}/users/me/identities/{PROVIDER_NAME}",
        json={"redirect_uri": redirect_uri, "current_password": account.password},
        headers=account.headers,
    )
    assert linking.status_code in (400, 422)
    assert rows.attempts() == []


def test_an_unknown_provider_is_a_404(client: TestClient, rows: Rows) -> None:
    response = client.get(
        f"{API}/auth/oidc/nope/authorize",
        params={"redirect_uri": FRONTEND, **PKCE},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert rows.attempts() == []


def test_the_frontend_gets_errors_on_its_registered_uri_only(browser: Browser) -> None:
    callback = browser.at_provider(browser.authorize(), sub="x", email=None, give_up=True)
    response = browser.callback(callback)
    assert response.status_code == 302
    assert response.headers["location"].startswith(FRONTEND + "?")
    assert query_of(response.headers["location"]) == {"error": "access_denied"}


# --- a provider that cannot be reached ---------------------------------------------------------


def test_a_provider_that_cannot_be_reached_gives_503_and_the_app_still_serves(
    database_url: str, rows: Rows
) -> None:
    # Nothing listens there: the port of a socket just closed.
    settings = make_settings(database_url, **provider_settings(f"http://127.0.0.1:{free_port()}"))
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        assert client.get(f"{API}/auth/oidc/providers").json() == [{"name": PROVIDER_NAME}]
        response = client.get(
            f"{API}/auth/oidc/{PROVIDER_NAME}/authorize",
            params={"redirect_uri": FRONTEND, **PKCE},
            follow_redirects=False,
        )
        assert response.status_code == 503
        assert response.json() == {
            "detail": "The sign-in provider cannot be reached right now; try again later"
        }
    app.state.database.dispose()
    assert rows.attempts() == []


# --- over https --------------------------------------------------------------------------------


def test_over_https_a_binding_planted_under_the_plain_name_is_refused(
    client: TestClient, rows: Rows
) -> None:
    # A sibling subdomain (cookie tossing) can set `oidc_browser` for the API's host, but
    # never `__Host-oidc_browser`: over https only the latter binds.
    client.base_url = client.base_url.copy_with(scheme="https")
    browser = Browser(
        app=client,
        provider=httpx2.Client(follow_redirects=False, timeout=10),
        callback_url=HTTPS_CALLBACK,
    )
    callback = browser.at_provider(browser.authorize(), sub="tossed", email="tossed@example.com")
    binding = client.cookies.get(HOST_BROWSER_COOKIE)
    assert binding

    client.cookies.clear()
    client.cookies.set(BROWSER_COOKIE, binding, path=f"{API}/auth/oidc/{PROVIDER_NAME}")
    assert browser.back_at_frontend(callback) == {"error": "invalid_state"}
    assert_nothing_made(rows, "tossed@example.com")

    # The same value under the host-only name is the browser that began it.
    client.cookies.clear()
    client.cookies.set(HOST_BROWSER_COOKIE, binding, path="/")
    back = browser.back_at_frontend(callback)
    assert browser.exchange(back["code"]).status_code == 200
    browser.provider.close()
