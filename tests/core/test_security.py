import base64
import json
import os
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from jose import jwt
from passlib.hash import bcrypt as bcrypt_handler
from starlette.testclient import TestClient

from core import security
from core.security import (
    HASHING_THREAD_NICENESS,
    InvalidTokenError,
    PasswordHasher,
    create_access_token,
    decode_access_token,
)
from tests.conftest import TEST_SECRET_KEY, Account

ME = "/api/v1/users/me"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_for(account: Account, **changes: object) -> dict[str, object]:
    """Claims for the account's own signed-in session, as the server would sign them."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": account.id,
        "ver": 0,
        "sid": jwt.get_unverified_claims(account.access_token)["sid"],
        "type": "access",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def status_with(client: TestClient, token: str) -> int:
    response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    return response.status_code


class TestAccessTokens:
    def test_a_well_formed_token_is_accepted(self, client: TestClient, account: Account) -> None:
        token = jwt.encode(claims_for(account), TEST_SECRET_KEY, algorithm="HS256")
        assert status_with(client, token) == 200

    def test_wrong_signature_is_401(self, client: TestClient, account: Account) -> None:
        token = jwt.encode(claims_for(account), "another-secret-key-of-good-length!!", "HS256")
        assert status_with(client, token) == 401

    def test_expired_token_is_401(self, client: TestClient, account: Account) -> None:
        past = int(time.time()) - 3600
        token = jwt.encode(
            claims_for(account, iat=past - 60, exp=past), TEST_SECRET_KEY, algorithm="HS256"
        )
        assert status_with(client, token) == 401

    def test_alg_none_is_401(self, client: TestClient, account: Account) -> None:
        for alg in ("none", "None", "NONE"):
            token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims_for(account))}."
            assert status_with(client, token) == 401

    def test_another_algorithm_with_the_real_key_is_401(
        self, client: TestClient, account: Account
    ) -> None:
        token = jwt.encode(claims_for(account), TEST_SECRET_KEY, algorithm="HS512")
        assert status_with(client, token) == 401

    def test_token_without_exp_sub_or_sid_is_401(
        self, client: TestClient, account: Account
    ) -> None:
        for missing in ("exp", "sub", "sid"):
            claims = claims_for(account)
            del claims[missing]
            assert status_with(client, jwt.encode(claims, TEST_SECRET_KEY, "HS256")) == 401

    def test_tampered_payload_is_401(self, client: TestClient, account: Account) -> None:
        header, _, signature = account.access_token.split(".")
        payload = b64(claims_for(account, sub="00000000-0000-0000-0000-000000000000"))
        forged = f"{header}.{payload}.{signature}"
        assert status_with(client, forged) == 401

    def test_a_token_accepted_while_valid_is_refused_once_it_expires(
        self, client: TestClient, account: Account, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Accepted once, the token's signature check is remembered; its expiry must still be
        # read on every use.
        token = jwt.encode(claims_for(account, exp=int(time.time()) + 60), TEST_SECRET_KEY, "HS256")
        assert status_with(client, token) == 200
        later = time.time() + 61
        monkeypatch.setattr(security, "time", SimpleNamespace(time=lambda: later))
        assert status_with(client, token) == 401


class TestPureFunctions:
    def test_round_trip(self) -> None:
        token = create_access_token(
            subject="abc",
            token_version=3,
            session_id="s",
            secret_key=TEST_SECRET_KEY,
            expires_in=timedelta(minutes=1),
        )
        claims = decode_access_token(token, secret_key=TEST_SECRET_KEY)
        assert (claims.subject, claims.token_version, claims.session_id) == ("abc", 3, "s")

    def test_garbage_raises_invalid_token(self) -> None:
        for junk in ("", "a.b", "a.b.c.d.e", "x" * 16_000, "ÿÿÿ.ÿÿÿ.ÿÿÿ"):
            with pytest.raises(InvalidTokenError):
                decode_access_token(junk, secret_key=TEST_SECRET_KEY)

    def test_the_dummy_hash_costs_a_real_verify_and_matches_nothing(self) -> None:
        hasher = PasswordHasher(rounds=5, concurrency=1)
        dummy = hasher._dummy_hash
        # Same scheme and cost factor as a real hash: bcrypt spends the same time on it.
        assert bcrypt_handler.from_string(dummy).rounds == 5
        assert bcrypt_handler.identify(dummy)
        assert not hasher.verify("", None)
        assert not hasher.verify("correct-horse", None)

    def test_hashing_threads_run_at_the_lowest_priority(self) -> None:
        hasher = PasswordHasher(rounds=4, concurrency=1)

        def own_priority() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        try:
            assert hasher._executor.submit(own_priority).result() == HASHING_THREAD_NICENESS
        finally:
            hasher.shutdown()

    def test_hasher_verifies_and_refuses(self) -> None:
        hasher = PasswordHasher(rounds=4, concurrency=1)
        hashed = hasher.hash("correct-horse")
        assert hashed.startswith("$2b$04$")
        assert hasher.verify("correct-horse", hashed)
        assert not hasher.verify("wrong-horse", hashed)
        assert not hasher.verify("correct-horse", None)
