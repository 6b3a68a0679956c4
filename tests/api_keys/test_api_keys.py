"""API keys through the API: issued once, used as a Bearer credential, never more than their
owner, never an account-level action, revoked at once. Each security rule has a test that
fails without it."""

import asyncio
import re
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlmodel import Session
from starlette.testclient import TestClient

from core.data.db import Database
from features.api_keys import service as api_keys_service
from features.api_keys.service import (
    CHECKSUM_LENGTH,
    KEY_PREFIX,
    checksum,
    new_key,
    parse_key,
)
from features.users.permissions import READ
from main import create_app
from tests.conftest import Account, make_settings

KEYS = "/api/v1/api-keys"
ME = "/api/v1/users/me"
USERS = "/api/v1/users"
KEY_PATTERN = re.compile(r"^fak_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$")
REFUSED = {"detail": "Could not validate credentials"}
TIMING_SAMPLES = 15


def with_secret(key: str, secret: str) -> str:
    """`key`'s public id with another secret, correctly checksummed: a guess at a real key."""
    public_id, _ = parse_key(key) or ("", "")
    body = f"{KEY_PREFIX}{public_id}_{secret}"
    return body + checksum(body)


def issue(client: TestClient, owner: Account, **body: Any) -> dict[str, Any]:
    response = client.post(KEYS, headers=owner.headers, json={"name": "ci", **body})
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class TestIssuing:
    def test_a_key_is_shown_once_and_reads_the_owners_account(
        self, client: TestClient, account: Account
    ) -> None:
        issued = issue(client, account)
        assert KEY_PATTERN.match(issued["key"])
        assert issued["prefix"] == issued["key"][:16]
        assert issued["permissions"] == []
        me = client.get(ME, headers=bearer(issued["key"]))
        assert (me.status_code, me.json()["id"]) == (200, account.id)
        listed = client.get(KEYS, headers=account.headers).json()
        assert [key["id"] for key in listed] == [issued["id"]]
        assert "key" not in listed[0]
        assert issued["key"] not in client.get(KEYS, headers=account.headers).text

    def test_the_secret_is_in_no_table(
        self, client: TestClient, account: Account, connection: Connection
    ) -> None:
        issued = issue(client, account)
        _, secret = parse_key(issued["key"]) or ("", "")
        dialect = connection.dialect.name
        tables = [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    if dialect == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            )
        ]
        for table in tables:
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()  # noqa: S608
            assert not any(secret in str(value) for row in rows for value in row), table

    def test_the_stored_hash_is_keyed_so_a_copy_of_the_table_checks_no_key(
        self,
        client: TestClient,
        account: Account,
        database_url: str,
        session_factory: Callable[[], Session],
    ) -> None:
        """The table alone cannot tell a guess from the key: an app with another SECRET_KEY,
        reading the same rows, refuses the key its owner still uses."""
        key = issue(client, account)["key"]
        other_secret = "another-secret-key-that-is-long-enough-9876543210"
        other = create_app(make_settings(database_url, SECRET_KEY=other_secret, REDIS_URL=""))
        other.state.database.dispose()
        other.state.database = Database(session_factory, max_threads=4)
        try:
            with TestClient(other, raise_server_exceptions=False) as elsewhere:
                assert elsewhere.get(ME, headers=bearer(key)).status_code == 401
        finally:
            other.state.database.dispose()
        assert client.get(ME, headers=bearer(key)).status_code == 200

    def test_a_permission_the_owner_lacks_is_refused(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.post(
            KEYS, headers=account.headers, json={"name": "x", "permissions": [READ]}
        )
        assert response.status_code == 403
        unknown = client.post(
            KEYS, headers=account.headers, json={"name": "x", "permissions": ["users:fly"]}
        )
        assert unknown.status_code == 422
        past = client.post(
            KEYS,
            headers=account.headers,
            json={"name": "x", "expires_at": "2020-01-01T00:00:00Z"},
        )
        assert past.status_code == 422


class TestWhatAKeyMayDo:
    def test_its_permissions_and_no_more(self, client: TestClient, superuser: Account) -> None:
        reader = issue(client, superuser, permissions=[READ])
        assert client.get(USERS, headers=bearer(reader["key"])).status_code == 200
        patched = client.patch(
            f"{USERS}/{superuser.id}", headers=bearer(reader["key"]), json={"name": "x"}
        )
        assert patched.status_code == 403  # users:manage: the owner holds it, the key does not
        plain = issue(client, superuser)
        assert client.get(USERS, headers=bearer(plain["key"])).status_code == 403

    def test_never_more_than_the_owner_holds_now(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
    ) -> None:
        admin = make_account(is_superuser=True)
        key = issue(client, admin, permissions=[READ])
        assert client.get(USERS, headers=bearer(key["key"])).status_code == 200
        demoted = client.patch(
            f"{USERS}/{admin.id}", headers=superuser.headers, json={"is_superuser": False}
        )
        assert demoted.status_code == 200
        assert client.get(USERS, headers=bearer(key["key"])).status_code == 403
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200

    def test_an_edit_of_the_owners_role_reaches_the_key_at_once(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
    ) -> None:
        role = client.post(
            "/api/v1/roles", headers=superuser.headers, json={"name": "r", "permissions": [READ]}
        )
        assert role.status_code == 201, role.text
        owner = make_account(roles=["r"])
        key = issue(client, owner, permissions=[READ])
        assert client.get(USERS, headers=bearer(key["key"])).status_code == 200  # now cached
        emptied = client.patch(
            f"/api/v1/roles/{role.json()['id']}",
            headers=superuser.headers,
            json={"permissions": []},
        )
        assert emptied.status_code == 200
        assert client.get(USERS, headers=bearer(key["key"])).status_code == 403

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("post", KEYS, {"name": "another"}),
            ("post", f"{ME}/password", {"current_password": "x", "new_password": "new-password-1"}),
            ("patch", ME, {"email": "moved@example.com", "current_password": "x"}),
            ("delete", ME, None),
        ],
    )
    def test_no_account_level_action(
        self, client: TestClient, account: Account, method: str, path: str, body: Any
    ) -> None:
        key = issue(client, account)["key"]
        response = client.request(method, path, headers=bearer(key), json=body)
        assert (response.status_code, response.json()) == (
            403,
            {"detail": "An API key cannot do this: sign in"},
        )
        assert client.get(ME, headers=account.headers).json()["email"] == account.email


class TestRevocationAndExpiry:
    def test_a_revoked_key_is_refused_at_once(self, client: TestClient, account: Account) -> None:
        key = issue(client, account)
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200  # now cached
        assert client.delete(f"{KEYS}/{key['id']}", headers=account.headers).status_code == 204
        refused = client.get(ME, headers=bearer(key["key"]))
        assert (refused.status_code, refused.json()) == (401, REFUSED)
        assert client.get(KEYS, headers=account.headers).json() == []

    def test_a_deactivated_owners_key_is_refused(
        self, client: TestClient, account: Account, superuser: Account
    ) -> None:
        key = issue(client, account)["key"]
        assert client.get(ME, headers=bearer(key)).status_code == 200
        client.patch(f"{USERS}/{account.id}", headers=superuser.headers, json={"is_active": False})
        assert client.get(ME, headers=bearer(key)).status_code == 401

    def test_an_expired_key_is_refused_from_its_expiry_on(
        self, client: TestClient, account: Account
    ) -> None:
        expires = datetime.now(UTC) + timedelta(seconds=2)
        key = issue(client, account, expires_at=expires.isoformat())
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200  # now cached
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
        assert client.get(ME, headers=bearer(key["key"])).status_code == 401


class TestRateLimitAndLastUse:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"API_KEY_RATE_LIMIT": "3/minute"}

    def test_each_key_has_a_limit_of_its_own(self, client: TestClient, account: Account) -> None:
        first, second = issue(client, account)["key"], issue(client, account)["key"]
        statuses = [client.get(ME, headers=bearer(first)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = client.get(ME, headers=bearer(first))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another key of the same owner, and the owner's own sign-in, are not held back.
        assert client.get(ME, headers=bearer(second)).status_code == 200
        assert client.get(ME, headers=account.headers).status_code == 200

    def test_last_use_is_written_once_a_minute_not_per_request(
        self, client: TestClient, account: Account, connection: Connection
    ) -> None:
        key = issue(client, account)
        assert client.get(KEYS, headers=account.headers).json()[0]["last_used_at"] is None
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200
        first_use = client.get(KEYS, headers=account.headers).json()[0]["last_used_at"]
        assert first_use is not None
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200
        connection.execute(text("UPDATE api_keys SET last_used_at = NULL"))
        # Within the minute the use is not written again, even with the column cleared.
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200
        assert connection.execute(text("SELECT last_used_at FROM api_keys")).scalar() is None

    def test_a_second_write_of_the_last_use_within_the_minute_changes_nothing(
        self, client: TestClient, app: FastAPI, account: Account, connection: Connection
    ) -> None:
        """Instances without a shared store each claim the minute for themselves: the write
        itself refuses a second one, whichever instance sends it."""
        key = issue(client, account)
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200
        first = connection.execute(text("SELECT last_used_at FROM api_keys")).scalar()
        assert first is not None
        asyncio.run(api_keys_service._mark_used(app.state.database, key_id=uuid.UUID(key["id"])))
        assert connection.execute(text("SELECT last_used_at FROM api_keys")).scalar() == first


class TestOthersKeys:
    def test_one_account_cannot_see_or_revoke_anothers_keys(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        owner, other = make_account(), make_account()
        key = issue(client, owner)
        assert client.delete(f"{KEYS}/{key['id']}", headers=other.headers).status_code == 404
        listed = client.get(KEYS, params={"user_id": owner.id}, headers=other.headers)
        assert listed.status_code == 403
        assert client.get(ME, headers=bearer(key["key"])).status_code == 200

    def test_a_holder_of_api_keys_manage_may(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        key = issue(client, account)
        listed = client.get(KEYS, params={"user_id": account.id}, headers=superuser.headers)
        assert [item["id"] for item in listed.json()] == [key["id"]]
        assert client.delete(f"{KEYS}/{key['id']}", headers=superuser.headers).status_code == 204
        assert client.get(ME, headers=bearer(key["key"])).status_code == 401


class TestForgedKeys:
    @pytest.mark.parametrize(
        "forged",
        [
            "fak_",
            "fak_" + "A" * 51,
            "fak_AAAAAAAAAAAA_" + "A" * 38,  # well formed, wrong checksum
            "not-a-key-at-all",
            "eyJhbGciOiJIUzI1NiJ9.e30.x",  # a forged JWT
        ],
    )
    def test_get_the_same_401_as_a_forged_token(self, client: TestClient, forged: str) -> None:
        response = client.get(ME, headers=bearer(forged))
        assert (response.status_code, response.json()) == (401, REFUSED)
        assert response.headers["www-authenticate"] == "Bearer"

    def test_a_wrong_secret_for_a_real_key_gets_the_same_401(
        self, client: TestClient, account: Account
    ) -> None:
        real = issue(client, account)["key"]
        response = client.get(ME, headers=bearer(with_secret(real, "B" * 32)))
        assert (response.status_code, response.json()) == (401, REFUSED)

    def test_a_real_key_with_another_checksum_gets_the_same_401(
        self, client: TestClient, account: Account
    ) -> None:
        real = issue(client, account)["key"]
        assert client.get(ME, headers=bearer(real)).status_code == 200
        body, given = real[:-CHECKSUM_LENGTH], real[-CHECKSUM_LENGTH:]
        other = next(candidate for candidate in ("000000", "000001") if candidate != given)
        response = client.get(ME, headers=bearer(body + other))
        assert (response.status_code, response.json()) == (401, REFUSED)

    def test_a_wrong_secret_costs_the_database_what_an_unknown_key_costs(
        self, client: TestClient, app: FastAPI, account: Account, connection: Connection
    ) -> None:
        """The timing rule counted, not clocked: the same database statements for a live
        key's id with a wrong secret as for an id nobody has."""
        if not app.state.cache.shared:
            pytest.skip("without Redis a key is read from the database at each use (dev only)")
        real = issue(client, account)["key"]
        assert client.get(ME, headers=bearer(real)).status_code == 200  # cached, as in use

        def statements_for(key: str) -> int:
            seen: list[str] = []

            def count(*args: Any) -> None:
                seen.append(str(args[2]))

            event.listen(connection, "before_cursor_execute", count)
            try:
                assert client.get(ME, headers=bearer(key)).status_code == 401
            finally:
                event.remove(connection, "before_cursor_execute", count)
            return len(seen)

        assert statements_for(with_secret(real, "B" * 32)) == statements_for(new_key()[0])

    def test_timing_tells_nobody_which_keys_exist(
        self, client: TestClient, app: FastAPI, account: Account
    ) -> None:
        """A real key's id with a wrong secret costs what an unknown id costs: a database
        read, a cache read and a hash each, so an attacker holding a key's prefix cannot tell
        it is still live."""
        if not app.state.cache.shared:
            pytest.skip("without Redis a key is read from the database at each use (dev only)")
        real = issue(client, account)["key"]
        assert client.get(ME, headers=bearer(real)).status_code == 200  # cached, as in use

        def median_ms(keys: list[str]) -> float:
            spent = []
            for key in keys:
                started = time.perf_counter()
                assert client.get(ME, headers=bearer(key)).status_code == 401
                spent.append((time.perf_counter() - started) * 1000)
            return statistics.median(spent)

        wrong_secrets = [with_secret(real, f"{n:032d}") for n in range(TIMING_SAMPLES)]
        unknown_ids = [new_key()[0] for _ in range(TIMING_SAMPLES)]
        known, unknown = median_ms(wrong_secrets), median_ms(unknown_ids)
        print(f"\nwrong secret for a live key {known:.2f} ms, unknown key {unknown:.2f} ms")
        assert 0.5 < known / unknown < 2.0
