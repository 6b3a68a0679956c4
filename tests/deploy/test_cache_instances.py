"""The cache across instances: two servers sharing one PostgreSQL and one Redis, both serving
the authenticated user from Redis. Once the response that revoked a token has been sent, no
instance accepts that token again, whatever readers were doing while the write committed, and
even when the writer cannot reach Redis. Redis stopped, flushed or stalled costs speed only.

The Redis is the test's own (a redis-server on a free port), and instance A reaches it through
a TCP proxy the test can cut or stall while instance B keeps its own connection.
"""

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx2
import pytest
import redis as redis_client

from tests.conftest import ROOT
from tests.support import (
    LiveServer,
    RedisServer,
    TcpProxy,
    fresh_postgres_database,
    migrate,
    redis_server,
    requires_postgres,
    requires_redis_server,
    run_server,
    server_env,
)

pytestmark = [requires_postgres, requires_redis_server]

ME = "/api/v1/users/me"
PASSWORD = "first-password"
# Short, so the outage test waits seconds, not the default ten.
USER_TTL_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 0.2
REDIS_BACKOFF_SECONDS = 1.0
READERS_PER_INSTANCE = 3


@dataclass
class Cluster:
    a: LiveServer  # reaches Redis through the proxy
    b: LiveServer  # reaches Redis directly
    redis: RedisServer
    proxy: TcpProxy
    database_url: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp_path = tmp_path_factory.mktemp("cache-instances")
    settings = {
        "CACHE_USER_TTL_SECONDS": str(USER_TTL_SECONDS),
        "REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT_SECONDS),
        "REDIS_BACKOFF_SECONDS": str(REDIS_BACKOFF_SECONDS),
        "ENVIRONMENT": "production",
    }
    with fresh_postgres_database() as database_url, redis_server(tmp_path) as redis:
        migrate(database_url)
        proxy = TcpProxy(("127.0.0.1", redis.port))
        proxy.start()
        via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
        try:
            with (
                run_server(database_url, tmp_path, REDIS_URL=via_proxy, **settings) as a,
                run_server(database_url, tmp_path, REDIS_URL=redis.url, **settings) as b,
            ):
                yield Cluster(a, b, redis, proxy, database_url)
        finally:
            proxy.stop()


def new_account(server: LiveServer) -> tuple[str, dict[str, str]]:
    email = f"cached-{uuid.uuid4().hex[:10]}@example.com"
    with httpx2.Client(base_url=server.base_url, timeout=15) as client:
        created = client.post(
            "/api/v1/auth/register", json={"name": "Cached", "email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        tokens = client.post("/api/v1/auth/login", data={"username": email, "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
    return email, {"Authorization": f"Bearer {tokens.json()['access_token']}"}


@dataclass
class Readers:
    """Threads reading `path` (/users/me by default) with one token on both instances: when
    each request was sent and what it got."""

    headers: dict[str, str]
    servers: list[LiveServer]
    path: str = ME
    seen: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> "Readers":
        self.threads = [
            threading.Thread(target=self._read, args=(server,), daemon=True)
            for server in self.servers
            for _ in range(READERS_PER_INSTANCE)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _read(self, server: LiveServer) -> None:
        with httpx2.Client(base_url=server.base_url, timeout=15) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                status = client.get(self.path, headers=self.headers).status_code
                with self.lock:
                    self.seen.append((sent, status, server.base_url))

    def sent_after(self, moment: float) -> list[tuple[float, int, str]]:
        with self.lock:
            return [entry for entry in self.seen if entry[0] > moment]

    def accepted_before(self, moment: float) -> int:
        with self.lock:
            return sum(1 for sent, status, _ in self.seen if sent < moment and status == 200)


def cached_accounts(redis: RedisServer) -> int:
    """How many authenticated-user entries Redis holds right now."""
    with redis_client.Redis(port=redis.port, socket_timeout=2) as store:
        return len(store.keys("cache:*:entry:account:*"))


def change_password(server: LiveServer, headers: dict[str, str]) -> httpx2.Response:
    with httpx2.Client(base_url=server.base_url, timeout=30) as client:
        return client.post(
            f"{ME}/password",
            headers=headers,
            json={"current_password": PASSWORD, "new_password": "second-password"},
        )


@pytest.mark.parametrize("writer", ["a", "b"])
def test_no_instance_accepts_a_token_after_the_response_that_revoked_it(
    cluster: Cluster, writer: str
) -> None:
    for _ in range(3):
        _, headers = new_account(cluster.a)
        with Readers(headers, [cluster.a, cluster.b]) as readers:
            time.sleep(0.5)  # both instances serve the account from Redis by now
            assert cached_accounts(cluster.redis) >= 1
            answered = change_password(cluster.a if writer == "a" else cluster.b, headers)
            assert answered.status_code == 204, answered.text
            revoked_at = time.monotonic()
            time.sleep(0.5)
        assert readers.accepted_before(revoked_at) > 0
        late = readers.sent_after(revoked_at)
        assert late
        assert {status for _, status, _ in late} == {401}, late


def test_both_instances_give_one_body_one_etag_and_honour_each_others(cluster: Cluster) -> None:
    """ETags come from the body alone (not from anything per process, like Python's
    randomised hash()), so a client behind the load balancer gets 304 from any instance."""
    _, headers = new_account(cluster.a)
    with (
        httpx2.Client(base_url=cluster.a.base_url, timeout=15) as a,
        httpx2.Client(base_url=cluster.b.base_url, timeout=15) as b,
    ):
        from_a, from_b = a.get(ME, headers=headers), b.get(ME, headers=headers)
        assert from_a.status_code == from_b.status_code == 200
        assert from_a.content == from_b.content
        assert from_a.headers["etag"] == from_b.headers["etag"]
        again = b.get(ME, headers={**headers, "If-None-Match": from_a.headers["etag"]})
        assert again.status_code == 304


def test_a_deleted_account_is_refused_everywhere_at_once(cluster: Cluster) -> None:
    _, headers = new_account(cluster.b)
    with Readers(headers, [cluster.a, cluster.b]) as readers:
        time.sleep(0.5)
        with httpx2.Client(base_url=cluster.a.base_url, timeout=30) as client:
            assert client.delete(ME, headers=headers).status_code == 204
        deleted_at = time.monotonic()
        time.sleep(0.5)
    assert readers.accepted_before(deleted_at) > 0
    assert {status for _, status, _ in readers.sent_after(deleted_at)} == {401}


def test_a_writer_that_cannot_reach_redis_answers_only_once_no_instance_can_serve_the_token(
    cluster: Cluster,
) -> None:
    _, headers = new_account(cluster.b)
    with Readers(headers, [cluster.b]) as readers:
        time.sleep(0.5)
        assert cached_accounts(cluster.redis) >= 1
        cluster.proxy.stop()  # A loses Redis; B keeps serving the account from it
        try:
            started = time.monotonic()
            answered = change_password(cluster.a, headers)
            revoked_at = time.monotonic()
            time.sleep(0.5)
        finally:
            cluster.proxy.start()  # same port again: A finds Redis after its back-off
    assert answered.status_code == 204, answered.text
    # It could not move the tag, so it waited out every entry that might still be served.
    assert revoked_at - started >= USER_TTL_SECONDS
    assert readers.accepted_before(started) > 0
    assert {status for _, status, _ in readers.sent_after(revoked_at)} == {401}


def _timed_reads(server: LiveServer, headers: dict[str, str], count: int) -> list[float]:
    durations = []
    with httpx2.Client(base_url=server.base_url, timeout=15) as client:
        for _ in range(count):
            started = time.monotonic()
            assert client.get(ME, headers=headers).status_code == 200
            durations.append(time.monotonic() - started)
    return durations


def _readiness(server: LiveServer) -> dict[str, str]:
    with httpx2.Client(base_url=server.base_url, timeout=15) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def _wait_until(check: Callable[[], object], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"not within {seconds} s")


class TestRedisTrouble:
    def test_a_stopped_redis_costs_speed_only_and_caching_comes_back(
        self, cluster: Cluster
    ) -> None:
        email, headers = new_account(cluster.b)
        cluster.redis.stop()
        try:
            durations = _timed_reads(cluster.b, headers, 20)
            assert _readiness(cluster.b)["status"] == "degraded"
            with httpx2.Client(base_url=cluster.b.base_url, timeout=15) as client:
                renamed = client.patch(ME, headers=headers, json={"name": "Renamed offline"})
                login = client.post(
                    "/api/v1/auth/login", data={"username": email, "password": PASSWORD}
                )
            assert renamed.status_code == 200
            assert login.status_code == 200
        finally:
            cluster.redis.start()
        # One timeout at most, then the back-off: never a timeout per request.
        assert max(durations) < 1.0
        assert sum(durations) < 3.0
        _wait_until(lambda: _readiness(cluster.b)["status"] == "ok", 10)
        # The account is read from the database once more, then kept in Redis again.
        _wait_until(
            lambda: _timed_reads(cluster.b, headers, 1) and cached_accounts(cluster.redis) > 0, 10
        )
        with httpx2.Client(base_url=cluster.b.base_url, timeout=15) as client:
            assert client.get(ME, headers=headers).json()["name"] == "Renamed offline"

    def test_a_flushed_redis_is_refilled_and_revocation_still_holds(self, cluster: Cluster) -> None:
        _, headers = new_account(cluster.a)
        with Readers(headers, [cluster.a, cluster.b]) as readers:
            time.sleep(0.3)
            assert cluster.redis.command("FLUSHALL") == "+OK"
            time.sleep(0.3)
            answered = change_password(cluster.a, headers)
            revoked_at = time.monotonic()
            time.sleep(0.5)
        assert answered.status_code == 204
        # The flush cost misses, never an error.
        assert {status for sent, status, _ in readers.seen if sent < revoked_at} <= {200, 401}
        assert readers.accepted_before(revoked_at) > 0
        assert {status for _, status, _ in readers.sent_after(revoked_at)} == {401}

    def test_a_stalled_redis_costs_one_short_timeout_per_back_off(self, cluster: Cluster) -> None:
        _, headers = new_account(cluster.a)
        _timed_reads(cluster.a, headers, 3)
        cluster.proxy.freeze()
        try:
            durations = _timed_reads(cluster.a, headers, 20)
            assert _readiness(cluster.a)["redis"] == "unavailable"
        finally:
            cluster.proxy.thaw()
        assert max(durations) < 1.0
        assert sum(durations) < 3.0
        _wait_until(lambda: _readiness(cluster.a)["status"] == "ok", 10)


def first_admin(cluster: Cluster) -> dict[str, str]:
    """The deploy's first admin (manage.py superuser, as the migrate step runs it)."""
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    subprocess.run(
        [sys.executable, "manage.py", "superuser"],
        cwd=ROOT,
        env=server_env(
            cluster.database_url, FIRST_SUPERUSER_EMAIL=email, FIRST_SUPERUSER_PASSWORD=PASSWORD
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    with httpx2.Client(base_url=cluster.a.base_url, timeout=15) as client:
        tokens = client.post("/api/v1/auth/login", data={"username": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


@pytest.mark.parametrize("how", ["roles replaced", "role deleted"])
def test_a_demoted_admin_loses_every_admin_route_at_once_on_both_instances(
    cluster: Cluster, how: str
) -> None:
    admin = first_admin(cluster)
    _, demoted = new_account(cluster.b)
    with httpx2.Client(base_url=cluster.b.base_url, timeout=30) as client:
        user_id = client.get(ME, headers=demoted).json()["id"]
        role = client.post(
            "/api/v1/roles",
            headers=admin,
            json={"name": f"r-{user_id[:8]}", "permissions": ["users:read"]},
        ).json()
        granted = client.put(
            f"/api/v1/users/{user_id}/roles",
            headers=admin,
            json={"roles": ["member", role["name"]]},
        )
        assert granted.status_code == 200, granted.text
    with Readers(demoted, [cluster.a, cluster.b], path="/api/v1/users") as readers:
        time.sleep(0.5)  # both instances serve the account, with its permissions, from Redis
        with httpx2.Client(base_url=cluster.a.base_url, timeout=30) as client:
            if how == "roles replaced":
                answer = client.put(
                    f"/api/v1/users/{user_id}/roles", headers=admin, json={"roles": ["member"]}
                )
                assert answer.status_code == 200, answer.text
            else:
                answer = client.delete(f"/api/v1/roles/{role['id']}", headers=admin)
                assert answer.status_code == 204, answer.text
        demoted_at = time.monotonic()
        time.sleep(0.5)
    assert readers.accepted_before(demoted_at) > 0
    late = readers.sent_after(demoted_at)
    assert late
    assert {status for _, status, _ in late} == {403}, late


def test_a_revoked_api_key_is_refused_by_both_instances_at_once(cluster: Cluster) -> None:
    _, signed_in = new_account(cluster.a)
    with httpx2.Client(base_url=cluster.a.base_url, timeout=30) as client:
        issued = client.post("/api/v1/api-keys", headers=signed_in, json={"name": "both"})
        assert issued.status_code == 201, issued.text
    key = issued.json()
    with Readers({"Authorization": f"Bearer {key['key']}"}, [cluster.a, cluster.b]) as readers:
        time.sleep(0.5)  # both instances serve the key from Redis by now
        with httpx2.Client(base_url=cluster.b.base_url, timeout=30) as client:
            revoked = client.delete(f"/api/v1/api-keys/{key['id']}", headers=signed_in)
            assert revoked.status_code == 204, revoked.text
        revoked_at = time.monotonic()
        time.sleep(0.5)
    assert readers.accepted_before(revoked_at) > 0
    late = readers.sent_after(revoked_at)
    assert late
    assert {status for _, status, _ in late} == {401}, late


def test_an_ended_session_is_refused_by_both_instances_at_once(cluster: Cluster) -> None:
    email, laptop = new_account(cluster.a)
    with httpx2.Client(base_url=cluster.b.base_url, timeout=30) as client:
        phone = client.post("/api/v1/auth/login", data={"username": email, "password": PASSWORD})
        assert phone.status_code == 200, phone.text
        from_phone = {"Authorization": f"Bearer {phone.json()['access_token']}"}
        laptops = client.get(f"{ME}/sessions", headers=from_phone).json()
        ended = next(item["id"] for item in laptops if not item["current"])
    with Readers(laptop, [cluster.a, cluster.b]) as readers:
        time.sleep(0.5)  # both instances serve the laptop's session from Redis by now
        with httpx2.Client(base_url=cluster.b.base_url, timeout=30) as client:
            answer = client.delete(f"{ME}/sessions/{ended}", headers=from_phone)
            assert answer.status_code == 204, answer.text
        ended_at = time.monotonic()
        time.sleep(0.5)
    assert readers.accepted_before(ended_at) > 0
    late = readers.sent_after(ended_at)
    assert late
    assert {status for _, status, _ in late} == {401}, late
    with httpx2.Client(base_url=cluster.a.base_url, timeout=30) as client:
        assert client.get(ME, headers=from_phone).status_code == 200
