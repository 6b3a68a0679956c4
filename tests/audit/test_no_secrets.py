"""One account's whole life, every event type on the way, then every event scanned: no
password, hash, token, token digest, key or address nobody has an account for, in any field,
in the table or in what the API answers."""

from collections.abc import Callable

import httpx2
import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from core.data import audit
from core.data.audit import AuditEvent
from features.api_keys.models import ApiKey
from features.oidc.models import ExchangeCode
from features.recovery.models import AccountToken
from features.users.models import RefreshToken, User
from tests.conftest import TEST_SECRET_KEY, Account
from tests.oidc import conftest as oidc_harness
from tests.oidc.conftest import CLIENT_SECRET, FRONTEND, PROVIDER_NAME, Browser, query_of
from tests.recovery import test_recovery as mail_harness
from tests.recovery.test_recovery import Inbox, link_token, request_reset_token

smtp_server = mail_harness.smtp_server
inbox = mail_harness.inbox
settings_overrides = mail_harness.settings_overrides
oidc_provider = oidc_harness.oidc_provider


@pytest.fixture
def extra_settings(oidc_provider: oidc_harness.OidcProvider) -> dict[str, object]:
    """Sign-in through the test OpenID provider, beside the mail settings."""
    return oidc_harness.provider_settings(oidc_provider.issuer)


API = "/api/v1"
ME = f"{API}/users/me"
PASSWORDS = [f"scan-password-{n}" for n in range(1, 6)]
GUESS = "wrong-guess-123"
GHOST = "Ghost.Visitor@Example.net"


def sign_in(client: TestClient, email: str, password: str) -> dict[str, str]:
    response = client.post(f"{API}/auth/login", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def token_values(tokens: dict[str, str]) -> list[str]:
    return [tokens["access_token"], tokens["refresh_token"]]


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def stored_secrets(session_factory: Callable[[], Session]) -> list[str]:
    """Every password hash and token digest the database holds now (an account made through
    a provider has no password hash)."""
    with session_factory() as session:
        return [
            *(found for found in session.exec(select(User.hashed_password)) if found is not None),
            *session.exec(select(RefreshToken.token_hash)).all(),
            *session.exec(select(AccountToken.token_hash)).all(),
            *session.exec(select(ApiKey.secret_hash)).all(),
            *session.exec(select(ExchangeCode.code_hash)).all(),
        ]


def test_no_event_holds_a_secret(
    client: TestClient,
    inbox: Inbox,
    superuser: Account,
    session_factory: Callable[[], Session],
) -> None:
    secrets: list[str] = [*PASSWORDS, GUESS, "ghost-guess", TEST_SECRET_KEY, GHOST]
    email = "scan@example.com"

    body = {"name": "Scan", "email": email, "password": PASSWORDS[0]}
    assert client.post(f"{API}/auth/register", json=body).status_code == 201
    verify = link_token(inbox.wait_for(1)[-1], "verify-email")
    secrets.append(verify)
    assert client.post(f"{API}/auth/verify-email", json={"token": verify}).status_code == 204

    first = sign_in(client, email, PASSWORDS[0])
    bad = {"username": email, "password": GUESS}
    assert client.post(f"{API}/auth/login", data=bad).status_code == 401
    ghost = {"username": GHOST, "password": "ghost-guess"}
    assert client.post(f"{API}/auth/login", data=ghost).status_code == 401
    rotated = client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    replayed = client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert (rotated.status_code, replayed.status_code) == (200, 401)
    second = sign_in(client, email, PASSWORDS[0])
    logout = client.post(f"{API}/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert logout.status_code == 204
    secrets += [*token_values(first), *token_values(rotated.json()), *token_values(second)]

    # Signed out, that session's access token is dead too: change the password from another.
    changing = sign_in(client, email, PASSWORDS[0])
    secrets += token_values(changing)
    change = {"current_password": PASSWORDS[0], "new_password": PASSWORDS[1]}
    assert client.post(f"{ME}/password", json=change, headers=bearer(changing)).status_code == 204
    third = sign_in(client, email, PASSWORDS[1])
    secrets += token_values(third)
    move = {"email": "scan-moved@example.com", "current_password": PASSWORDS[1]}
    assert client.patch(ME, json=move, headers=bearer(third)).status_code == 200
    (notice,) = [m for m in inbox.wait_for(3) if "address was changed" in str(m["Subject"])]
    restore = link_token(notice, "restore-email")
    secrets.append(restore)
    assert client.post(f"{API}/auth/restore-email", json={"token": restore}).status_code == 204

    reset = request_reset_token(client, inbox, email)
    secrets.append(reset)
    body = {"token": reset, "new_password": PASSWORDS[2]}
    assert client.post(f"{API}/auth/reset-password", json=body).status_code == 204
    fourth = sign_in(client, email, PASSWORDS[2])
    secrets += token_values(fourth)
    assert client.patch(ME, json={"name": "Scanned"}, headers=bearer(fourth)).status_code == 200

    # Sessions: one ended from the list, the rest by "everywhere else", one by an admin.
    extra = [sign_in(client, email, PASSWORDS[2]) for _ in range(3)]
    secrets += [token for tokens in extra for token in token_values(tokens)]
    listed_sessions = client.get(f"{ME}/sessions", headers=bearer(fourth)).json()
    others = [item["id"] for item in listed_sessions if not item["current"]]
    ended = client.delete(f"{ME}/sessions/{others[0]}", headers=bearer(fourth))
    assert ended.status_code == 204
    assert client.delete(f"{ME}/sessions", headers=bearer(fourth)).status_code == 204
    fifth = sign_in(client, email, PASSWORDS[2])
    secrets += token_values(fifth)
    me_id = client.get(ME, headers=bearer(fifth)).json()["id"]
    newest = next(
        i["id"] for i in client.get(f"{ME}/sessions", headers=bearer(fifth)).json() if i["current"]
    )
    by_admin = client.delete(f"{API}/users/{me_id}/sessions/{newest}", headers=superuser.headers)
    assert by_admin.status_code == 204

    # Through the OpenID provider: an account made, a refusal, a link and an unlink.
    browser = Browser(app=client, provider=httpx2.Client(follow_redirects=False, timeout=10))
    authorization = browser.authorize()
    callback = browser.at_provider(authorization, sub="scan-sub", email="oidc-scan@example.com")
    one_time = browser.back_at_frontend(callback)["code"]
    provider_tokens = browser.exchange(one_time).json()
    secrets += [one_time, *token_values(provider_tokens), CLIENT_SECRET, browser.code_verifier]
    secrets += [query_of(authorization)[name] for name in ("state", "nonce", "code_challenge")]
    secrets.append(query_of(callback)["code"])
    refused = browser.sign_in(
        sub="scan-unproven", email="unproven@example.com", email_verified=False
    )
    assert refused == {"error": "email_not_verified"}
    linking = client.post(
        f"{ME}/identities/{PROVIDER_NAME}",
        json={"redirect_uri": FRONTEND, "current_password": PASSWORDS[2]},
        headers=bearer(fourth),
    ).json()
    linked = browser.at_provider(linking["authorization_url"], sub="scan-link", email=None)
    assert browser.back_at_frontend(linked) == {"linked": PROVIDER_NAME}
    (identity,) = client.get(f"{ME}/identities", headers=bearer(fourth)).json()
    unlink = client.delete(f"{ME}/identities/{identity['id']}", headers=bearer(fourth))
    assert unlink.status_code == 204
    browser.provider.close()

    key = client.post(
        f"{API}/api-keys", json={"name": "scan key", "permissions": []}, headers=bearer(fourth)
    ).json()
    secrets.append(key["key"])
    secrets += stored_secrets(session_factory)  # the key's hash, before its row goes
    assert client.delete(f"{API}/api-keys/{key['id']}", headers=bearer(fourth)).status_code == 204

    admin = superuser.headers
    made = client.post(
        f"{API}/users",
        json={"name": "Made", "email": "made@example.com", "password": PASSWORDS[3]},
        headers=admin,
    ).json()
    changes = {"password": PASSWORDS[4], "email": "made-2@example.com", "is_active": False}
    assert client.patch(f"{API}/users/{made['id']}", json=changes, headers=admin).status_code == 200
    role = client.post(f"{API}/roles", json={"name": "scanner"}, headers=admin).json()
    edit = {"permissions": ["audit:read"]}
    assert client.patch(f"{API}/roles/{role['id']}", json=edit, headers=admin).status_code == 200
    assign = {"roles": ["member", "scanner"]}
    assert client.put(f"{API}/users/{made['id']}/roles", json=assign, headers=admin).is_success
    assert client.delete(f"{API}/roles/{role['id']}", headers=admin).status_code == 204
    secrets += stored_secrets(session_factory)  # every hash, before the accounts go
    assert client.delete(f"{API}/users/{made['id']}", headers=admin).status_code == 204
    assert client.delete(ME, headers=bearer(fourth)).status_code == 204

    with session_factory() as session:
        recorded = session.exec(select(AuditEvent)).all()

    declared = {name for name in audit.declared_event_types() if not name.startswith("tests.")}
    assert {event.type for event in recorded} == declared

    listed = client.get(f"{API}/audit-events", headers=admin)
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == len(recorded)
    texts = [event.model_dump_json() for event in recorded] + [listed.text]
    for text in texts:
        lowered = text.lower()
        assert "$2b$" not in text  # no bcrypt hash, whichever
        for secret in secrets:
            assert secret.lower() not in lowered, secret
        assert "ghost.visitor" not in lowered
