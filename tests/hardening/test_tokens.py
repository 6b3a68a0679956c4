"""Every way an access token can be wrong ends in the same 401 with a Bearer challenge."""

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from jose import jwt
from starlette.testclient import TestClient

from tests.conftest import TEST_SECRET_KEY, Account
from tests.hardening.conftest import assert_no_leak

ME = "/api/v1/users/me"
USERS = "/api/v1/users"


@dataclass
class Credentials:
    """What the client presents: headers (bytes for non-ASCII) and query parameters."""

    headers: dict[str, str | bytes] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def bearer(token: str) -> Credentials:
    return Credentials(headers={"Authorization": f"Bearer {token}"})


def b64(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(subject: object, **changes: object) -> dict[str, object]:
    now = int(time.time())
    values: dict[str, object] = {
        "sub": subject,
        "ver": 0,
        "type": "access",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value is not None}


def signed(payload: dict[str, object], key: str = TEST_SECRET_KEY, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def unsigned(alg: str, payload: dict[str, object]) -> str:
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."


@dataclass
class Scene:
    client: TestClient
    account: Account
    make_account: Callable[..., Account]


TokenCase = Callable[[Scene], Credentials]


def _deleted_user(scene: Scene) -> Credentials:
    doomed = scene.make_account()
    assert scene.client.delete(ME, headers=doomed.headers).status_code == 204
    return Credentials(headers=dict(doomed.headers))


def _deactivated_user(scene: Scene) -> Credentials:
    return Credentials(headers=dict(scene.make_account(is_active=False).headers))


def _before_password_change(scene: Scene) -> Credentials:
    changed = scene.client.post(
        f"{ME}/password",
        headers=scene.account.headers,
        json={"current_password": scene.account.password, "new_password": "a-brand-new-one"},
    )
    assert changed.status_code == 204
    return Credentials(headers=dict(scene.account.headers))


def _tampered(scene: Scene) -> Credentials:
    header, _, signature = scene.account.access_token.split(".")
    other = scene.make_account(is_superuser=True)
    return bearer(f"{header}.{b64(claims(other.id))}.{signature}")


def _query_string_only(scene: Scene) -> Credentials:
    return Credentials(params={"access_token": scene.account.access_token})


TOKEN_CASES: dict[str, TokenCase] = {
    "alg-none": lambda s: bearer(unsigned("none", claims(s.account.id))),
    "alg-None": lambda s: bearer(unsigned("None", claims(s.account.id))),
    "alg-NONE-with-signature": lambda s: bearer(
        unsigned("NONE", claims(s.account.id)) + s.account.access_token.split(".")[2]
    ),
    "HS512-real-key": lambda s: bearer(signed(claims(s.account.id), alg="HS512")),
    "HS384-real-key": lambda s: bearer(signed(claims(s.account.id), alg="HS384")),
    "wrong-key": lambda s: bearer(signed(claims(s.account.id), key="x" * 48)),
    "weak-key-changethis": lambda s: bearer(signed(claims(s.account.id), key="changethis")),
    "weak-key-secret": lambda s: bearer(signed(claims(s.account.id), key="secret")),
    "empty-key": lambda s: bearer(signed(claims(s.account.id), key="")),
    "expired": lambda s: bearer(
        signed(claims(s.account.id, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600))
    ),
    "no-exp": lambda s: bearer(
        signed({k: v for k, v in claims(s.account.id).items() if k != "exp"})
    ),
    "no-sub": lambda s: bearer(
        signed({k: v for k, v in claims(s.account.id).items() if k != "sub"})
    ),
    "no-ver": lambda s: bearer(
        signed({k: v for k, v in claims(s.account.id).items() if k != "ver"})
    ),
    "wrong-type": lambda s: bearer(signed(claims(s.account.id, type="refresh"))),
    "sub-deleted-user": _deleted_user,
    "sub-deactivated-user": _deactivated_user,
    "sub-nonexistent-user": lambda s: bearer(signed(claims(str(uuid.uuid4())))),
    "sub-not-a-uuid": lambda s: bearer(signed(claims("admin"))),
    "sub-an-integer": lambda s: bearer(signed(claims(1))),
    "sub-sql": lambda s: bearer(signed(claims("' OR 1=1 --"))),
    "tampered-payload": _tampered,
    "refresh-token-as-access": lambda s: bearer(s.account.refresh_token),
    "issued-before-password-change": _before_password_change,
    "two-parts": lambda s: bearer(".".join(s.account.access_token.split(".")[:2])),
    "five-parts": lambda s: bearer(s.account.access_token + ".e30.e30"),
    "16KB-junk": lambda s: bearer("A" * 16_384),
    "16KB-junk-with-dots": lambda s: bearer(".".join(["QUFB" * 1365] * 3)),
    "non-ascii": lambda s: Credentials(headers={"Authorization": "Bearer ÿé€.ñ.ü".encode()}),
    "basic-auth": lambda s: Credentials(headers={"Authorization": "Basic YTpi"}),
    "empty-bearer": lambda s: Credentials(headers={"Authorization": "Bearer "}),
    "bearer-word-only": lambda s: Credentials(headers={"Authorization": "Bearer"}),
    "query-string-only": _query_string_only,
}


@pytest.fixture
def scene(client: TestClient, account: Account, make_account: Callable[..., Account]) -> Scene:
    return Scene(client, account, make_account)


@pytest.mark.parametrize("route", [ME, USERS])
@pytest.mark.parametrize("case", sorted(TOKEN_CASES))
def test_a_bad_token_is_401_with_a_bearer_challenge(scene: Scene, case: str, route: str) -> None:
    credentials = TOKEN_CASES[case](scene)
    headers = [
        (name.encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in credentials.headers.items()
    ]
    response = scene.client.get(route, headers=headers, params=credentials.params)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() in (
        {"detail": "Not authenticated"},
        {"detail": "Could not validate credentials"},
    )
    assert_no_leak(response)


def test_the_genuine_token_still_works(scene: Scene) -> None:
    """The control for the cases above: the same request with the real token is let in."""
    response = scene.client.get(ME, headers=scene.account.headers)
    assert response.status_code == 200
    query_and_header = scene.client.get(
        ME, headers=scene.account.headers, params={"access_token": "junk"}
    )
    assert query_and_header.status_code == 200
