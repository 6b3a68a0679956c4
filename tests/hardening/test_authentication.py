"""Login reveals nothing about which accounts exist, passwords are bounded before bcrypt sees
them, and brute force meets a limit that holds across instances."""

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi import FastAPI
from passlib.context import CryptContext
from sqlmodel import Session
from starlette.testclient import TestClient

from core.config import Settings
from core.data.db import Database
from core.http.ratelimit import RateLimiter
from core.security import PasswordHasher, bcrypt_cost
from features.users.models import User
from main import create_app
from tests.conftest import Account, make_settings
from tests.hardening.conftest import assert_no_leak

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"
USERS = "/api/v1/users"
# Per response by design (x-request-id is fresh for every request), so never a tell.
VOLATILE_HEADERS = {"date", "content-length", "x-request-id"}
TIMING_SAMPLES = 15


class CountingHasher(PasswordHasher):
    """The app's own hasher, counting how often bcrypt actually runs."""

    def __init__(self, rounds: int = 4) -> None:
        super().__init__(rounds=rounds, concurrency=2)
        self.hashes = 0
        self.verifies = 0

    def hash(self, password: str) -> str:
        self.hashes += 1
        return super().hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        self.verifies += 1
        return super().verify(password, hashed)


@pytest.fixture
def hasher(app: FastAPI) -> CountingHasher:
    counting = CountingHasher()
    app.state.password_hasher = counting
    return counting


def login(client: TestClient, email: str, password: str) -> tuple[int, object, dict[str, str]]:
    response = client.post(LOGIN, data={"username": email, "password": password})
    headers = {k: v for k, v in response.headers.items() if k not in VOLATILE_HEADERS}
    return response.status_code, response.json(), headers


class TestNoAccountEnumeration:
    def test_unknown_email_wrong_password_and_inactive_user_are_byte_identical(
        self, client: TestClient, make_account: Callable[..., Account]
    ) -> None:
        active = make_account()
        inactive = make_account(is_active=False)
        outcomes = [
            login(client, "nobody-at-all@example.com", active.password),
            login(client, active.email, "not-the-password"),
            login(client, inactive.email, inactive.password),
        ]
        assert outcomes[0] == outcomes[1] == outcomes[2]
        status, body, headers = outcomes[0]
        assert status == 401
        assert body == {
            "detail": "Incorrect email or password",
            "error": "invalid_grant",
            "error_description": "Incorrect email or password",
        }
        assert headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("settings_overrides", [{"BCRYPT_ROUNDS": 8}])
    def test_unknown_email_costs_about_as_much_as_a_wrong_password(
        self, client: TestClient, account: Account, app: FastAPI
    ) -> None:
        # A loose guard against the dummy-hash path being skipped (that would be ~100x faster);
        # the benchmark is the real measurement.
        assert app.state.password_hasher.hash("x" * 8).startswith("$2b$08$")
        unknown: list[float] = []
        wrong: list[float] = []
        for index in range(TIMING_SAMPLES):
            for email, samples in (
                (f"ghost-{index}@example.com", unknown),
                (account.email, wrong),
            ):
                started = time.perf_counter()
                status, _, _ = login(client, email, "not-the-password")
                samples.append(time.perf_counter() - started)
                assert status == 401
        unknown_median, wrong_median = statistics.median(unknown), statistics.median(wrong)
        ratio = unknown_median / wrong_median
        print(
            f"\nlogin timing at BCRYPT_ROUNDS=8, {TIMING_SAMPLES} samples each: unknown email "
            f"median {unknown_median * 1000:.1f} ms, wrong password median "
            f"{wrong_median * 1000:.1f} ms, ratio {ratio:.2f}"
        )
        assert 0.5 <= ratio <= 2.0


class TestPasswordBounds:
    def test_72_bytes_are_accepted_and_log_in(self, client: TestClient) -> None:
        password = "p" * 72
        created = client.post(
            REGISTER, json={"name": "Max", "email": "max@example.com", "password": password}
        )
        assert created.status_code == 201
        assert login(client, "max@example.com", password)[0] == 200
        # bcrypt would accept a 73rd byte as "the same password"; here it is simply wrong.
        assert login(client, "max@example.com", password + "X")[0] == 401

    @pytest.mark.parametrize(
        "password", ["q" * 73, "€" * 25, "€" * 24 + "q", "short", "nul\x00byte-password"]
    )
    def test_out_of_bounds_passwords_are_422_everywhere_and_never_echoed(
        self, client: TestClient, superuser: Account, account: Account, password: str
    ) -> None:
        attempts = [
            client.post(
                REGISTER, json={"name": "A", "email": "a@example.com", "password": password}
            ),
            client.post(
                USERS,
                headers=superuser.headers,
                json={"name": "A", "email": "b@example.com", "password": password},
            ),
            client.patch(
                f"{USERS}/{account.id}", headers=superuser.headers, json={"password": password}
            ),
            client.post(
                f"{ME}/password",
                headers=account.headers,
                json={"current_password": account.password, "new_password": password},
            ),
        ]
        for response in attempts:
            assert response.status_code == 422, (response.request.url, response.text)
            assert_no_leak(response, password)
        assert login(client, account.email, account.password)[0] == 200

    def test_a_megabyte_password_in_register_is_refused(
        self, client: TestClient, hasher: CountingHasher
    ) -> None:
        password = "m" * 1_048_576
        response = client.post(
            REGISTER, json={"name": "Big", "email": "big@example.com", "password": password}
        )
        assert response.status_code in (413, 422)
        assert_no_leak(response, password[:100])
        assert hasher.hashes == 0

    def test_a_70_kb_password_is_422_without_hashing(
        self, client: TestClient, hasher: CountingHasher
    ) -> None:
        password = "k" * 70_000
        response = client.post(
            REGISTER, json={"name": "Big", "email": "big@example.com", "password": password}
        )
        assert response.status_code == 422
        assert_no_leak(response, password[:100])
        assert hasher.hashes == 0
        # The spy sees real work: a valid registration hashes exactly once.
        ok = client.post(
            REGISTER, json={"name": "Ok", "email": "ok@example.com", "password": "k" * 12}
        )
        assert ok.status_code == 201
        assert hasher.hashes == 1

    def test_a_70_kb_password_at_login_is_422_without_bcrypt(
        self, client: TestClient, account: Account, hasher: CountingHasher
    ) -> None:
        assert login(client, account.email, "k" * 70_000)[0] == 422
        assert hasher.verifies == 0
        assert login(client, account.email, "wrong-password")[0] == 401
        assert hasher.verifies == 1


@pytest.mark.parametrize("settings_overrides", [{"LOGIN_RATE_LIMIT": "5/minute"}])
class TestBruteForce:
    def test_guessing_ends_in_429_with_retry_after_and_stops_burning_bcrypt(
        self, client: TestClient, account: Account, hasher: CountingHasher
    ) -> None:
        # make_account logged in once already: four more attempts reach the limit of five.
        statuses = [login(client, account.email, f"guess-{n}")[0] for n in range(4)]
        assert statuses == [401] * 4
        verifies_at_limit = hasher.verifies
        for password in ("guess-again", account.password):
            response = client.post(LOGIN, data={"username": account.email, "password": password})
            assert response.status_code == 429
            assert 1 <= int(response.headers["retry-after"]) <= 60
            assert response.json()["detail"] == "Too many requests, try again later"
        assert hasher.verifies == verifies_at_limit


REDIS_URL = os.environ.get("TEST_REDIS_URL", "")


@pytest.mark.skipif(not REDIS_URL, reason="needs Redis (TEST_REDIS_URL)")
class TestSharedRateLimit:
    @pytest.fixture
    def key_prefix(self) -> Iterator[str]:
        prefix = f"hardening-{uuid.uuid4().hex}"
        yield prefix
        store = redis.Redis.from_url(REDIS_URL)
        for key in store.scan_iter(match=f"*{prefix}*"):
            store.delete(key)
        store.close()

    def _instance(
        self, database_url: str, session_factory: Callable[[], Session], key_prefix: str
    ) -> FastAPI:
        settings: Settings = make_settings(
            database_url, REDIS_URL=REDIS_URL, LOGIN_RATE_LIMIT="4/minute"
        )
        app = create_app(settings)
        assert isinstance(app.state.rate_limiter, RateLimiter)
        assert app.state.rate_limiter.shared
        app.state.database = Database(session_factory, max_threads=4)
        # Same Redis, same prefix as a sibling instance: the way two replicas are deployed.
        app.state.rate_limiter = RateLimiter(REDIS_URL, key_prefix=key_prefix)
        return app

    def test_two_instances_count_against_one_counter_in_redis(
        self,
        database_url: str,
        session_factory: Callable[[], Session],
        key_prefix: str,
        account: Account,
    ) -> None:
        first = self._instance(database_url, session_factory, key_prefix)
        second = self._instance(database_url, session_factory, key_prefix)
        email = account.email
        with TestClient(first) as one, TestClient(second) as two:
            assert login(one, email, "guess-1")[0] == 401
            assert login(two, email, "guess-2")[0] == 401
            store = redis.Redis.from_url(REDIS_URL)
            keys = [key.decode() for key in store.scan_iter(match=f"*{key_prefix}*")]
            store.close()
            # Counted in Redis, under digests: no address in clear.
            assert keys
            assert not any(email in key or email.split("@")[0] in key for key in keys), keys
            assert login(one, email, "guess-3")[0] == 401
            assert login(two, email, "guess-4")[0] == 401
            # Four attempts split over two instances: the fifth is refused by either one.
            assert login(one, email, account.password)[0] == 429
            assert login(two, email, account.password)[0] == 429


class CostRecorder:
    """Stands in for the hasher's passlib context and records the cost of every hash it
    verifies against, so a test sees how much bcrypt work an attempt did."""

    def __init__(self, context: CryptContext) -> None:
        self._context = context
        self.verified_costs: list[int] = []

    def verify(self, password: str, hashed: str) -> bool:
        self.verified_costs.append(bcrypt_cost(hashed))
        return bool(self._context.verify(password, hashed))

    def hash(self, password: str) -> str:
        return str(self._context.hash(password))


class ChangeWhileRehashing:
    """Stands in for the hasher's passlib context: before it makes the sign-in's new hash, the
    account's password is changed and committed, as a password change racing the sign-in
    would."""

    def __init__(
        self, context: CryptContext, session_factory: Callable[[], Session], user_id: uuid.UUID
    ) -> None:
        self._context = context
        self._session_factory = session_factory
        self._user_id = user_id
        self.changed_to = str(context.hash("changed-meanwhile"))

    def verify(self, password: str, hashed: str) -> bool:
        return bool(self._context.verify(password, hashed))

    def hash(self, password: str) -> str:
        with self._session_factory() as session:
            user = session.get(User, self._user_id)
            assert user is not None
            user.hashed_password = self.changed_to
            session.add(user)
            session.commit()
        return str(self._context.hash(password))


@pytest.mark.parametrize("settings_overrides", [{"BCRYPT_ROUNDS": 5}])
class TestCostChange:
    """BCRYPT_ROUNDS raised from 4 to 5 over accounts hashed at 4."""

    @pytest.fixture
    def old_account(self, session_factory: Callable[[], Session]) -> tuple[User, str]:
        password = "an-old-password"
        user = User(
            name="Old",
            email=f"old-{uuid.uuid4().hex[:8]}@example.com",
            hashed_password=PasswordHasher(rounds=4, concurrency=1).hash(password),
        )
        with session_factory() as session:
            session.add(user)
            session.commit()
        return user, password

    def stored_hash(self, session_factory: Callable[[], Session], user: User) -> str:
        with session_factory() as session:
            stored = session.get(User, user.id)
            assert stored is not None
            session.refresh(stored)
            assert stored.hashed_password is not None
            return stored.hashed_password

    def test_a_sign_in_rehashes_at_the_configured_cost(
        self,
        client: TestClient,
        session_factory: Callable[[], Session],
        old_account: tuple[User, str],
    ) -> None:
        user, password = old_account
        assert login(client, user.email, "a-wrong-one")[0] == 401
        assert bcrypt_cost(self.stored_hash(session_factory, user)) == 4  # a failure: untouched
        assert login(client, user.email, password)[0] == 200
        assert bcrypt_cost(self.stored_hash(session_factory, user)) == 5
        # The same password, now under the new hash; nothing else about the account moved.
        tokens = client.post(LOGIN, data={"username": user.email, "password": password}).json()
        me = client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200

    def test_a_password_changed_during_the_sign_in_is_not_overwritten_by_its_rehash(
        self,
        client: TestClient,
        app: FastAPI,
        session_factory: Callable[[], Session],
        old_account: tuple[User, str],
    ) -> None:
        user, password = old_account
        racing = ChangeWhileRehashing(app.state.password_hasher._context, session_factory, user.id)
        app.state.password_hasher._context = racing
        # The sign-in fails as the same attempt a moment later would have, and the change
        # committed meanwhile stands: the old password does not come back.
        assert login(client, user.email, password)[0] == 401
        assert self.stored_hash(session_factory, user) == racing.changed_to

    def test_a_wrong_password_for_an_old_hash_costs_what_an_unknown_address_costs(
        self, client: TestClient, app: FastAPI, old_account: tuple[User, str]
    ) -> None:
        user, _ = old_account
        recorder = CostRecorder(app.state.password_hasher._context)
        app.state.password_hasher._context = recorder
        assert login(client, "nobody-at-all@example.com", "a-wrong-one")[0] == 401
        assert recorder.verified_costs == [5]  # the dummy, at the configured cost
        recorder.verified_costs.clear()
        assert login(client, user.email, "a-wrong-one")[0] == 401
        # The old hash's own check, then the configured cost's worth on the dummy.
        assert recorder.verified_costs == [4, 5]
