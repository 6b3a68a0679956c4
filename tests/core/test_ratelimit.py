"""Rate limits during a Redis outage: a real redis-server of the test's own, stopped mid-test.

docs/configuration.md promises that limits keep counting per process while Redis is down, so a brute
force stays metered through an outage; a limiter that stopped counting instead would pass
every other test.
"""

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from limits import parse
from redis import Redis
from starlette.testclient import TestClient

from core.errors import TooManyRequestsError
from core.http.ratelimit import RateLimiter, address_key, lease_share
from tests.conftest import Account
from tests.support import RedisServer, redis_server, requires_redis_server

pytestmark = requires_redis_server

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def hits_allowed(limiter: RateLimiter, notation: str, key: str, tries: int) -> int:
    """How many of `tries` hits on `key` the limiter lets through."""

    async def count() -> int:
        allowed = 0
        for _ in range(tries):
            try:
                await limiter.hit(parse(notation), "test", key)
                allowed += 1
            except TooManyRequestsError:
                pass
        return allowed

    return asyncio.run(count())


def test_limits_count_in_redis_then_in_the_process_while_it_is_down(redis: RedisServer) -> None:
    limiter = RateLimiter(redis.url, key_prefix=f"t-{uuid.uuid4().hex}", timeout=0.2)
    assert hits_allowed(limiter, "3/minute", "someone", 5) == 3
    assert redis.command("DBSIZE") != ":0"  # counted in Redis
    redis.stop()
    # Redis is gone: the same limit holds, counted from zero in this process.
    assert hits_allowed(limiter, "3/minute", "someone-else", 5) == 3
    assert hits_allowed(limiter, "3/minute", "someone", 5) == 3


class TestLoginDuringAnOutage:
    @pytest.fixture
    def settings_overrides(self, redis: RedisServer) -> dict[str, object]:
        return {"REDIS_URL": redis.url, "LOGIN_RATE_LIMIT": "3/minute"}

    def test_the_brute_force_limit_holds_while_redis_is_down(
        self, client: TestClient, account: Account, redis: RedisServer
    ) -> None:
        redis.stop()
        statuses = [
            client.post(LOGIN, data={"username": account.email, "password": f"guess-{n}"})
            for n in range(5)
        ]
        assert [response.status_code for response in statuses] == [401, 401, 401, 429, 429]
        assert int(statuses[-1].headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "address:203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "address:2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "address:2001:db8:1:2::/64"),
        ("invalid", "address:invalid"),
    ],
)
def test_an_ipv6_subscriber_counts_as_one_address(address: str, key: str) -> None:
    """A /64 is what one IPv6 subscriber gets: counting per address would give one attacker
    2^64 budgets."""
    assert address_key(address) == key


# --- counted in shares (hit_leased) ----------------------------------------------------------
# Each test runs in one event loop: a limiter's Redis connections belong to the loop that
# opened them, and a second loop would see the store fail and count in the process instead.


def commands_processed(store: Redis) -> int:
    """Every command the Redis server has run so far."""
    return int(store.info("stats")["total_commands_processed"])


async def leased_hits_allowed(
    limiters: list[RateLimiter], notation: str, key: str, tries: int
) -> int:
    """How many of `tries` hits on `key`, sent to `limiters` in turn, get through."""
    allowed = 0
    for attempt in range(tries):
        try:
            await limiters[attempt % len(limiters)].hit_leased(parse(notation), "test", key)
            allowed += 1
        except TooManyRequestsError:
            pass
    return allowed


def test_processes_sharing_a_limit_in_shares_never_admit_more_than_it(redis: RedisServer) -> None:
    prefix = f"t-{uuid.uuid4().hex}"
    share = lease_share(parse("1000/minute"))
    assert share > 1  # the case under test: each process holds several hits at once
    processes = [RateLimiter(redis.url, key_prefix=prefix, timeout=0.5) for _ in range(3)]

    async def scenario() -> tuple[int, int]:
        together = await leased_hits_allowed(processes, "1000/minute", "someone", 1200)
        alone = await leased_hits_allowed(processes[:1], "1000/minute", "someone-else", 1200)
        return together, alone

    together, alone = asyncio.run(scenario())
    # Never more than the limit; less by at most one unspent share per process.
    assert 1000 - len(processes) * share <= together <= 1000
    assert alone == 1000  # one process alone spends the whole limit
    assert redis.command("PING") == "+PONG"


def test_a_share_is_one_round_trip_for_many_hits(redis: RedisServer) -> None:
    limiter = RateLimiter(redis.url, key_prefix=f"t-{uuid.uuid4().hex}", timeout=0.5)
    with Redis.from_url(redis.url) as store:
        before = commands_processed(store)
        allowed = asyncio.run(leased_hits_allowed([limiter], "1000/minute", "someone", 100))
        spent = commands_processed(store) - before
    assert allowed == 100
    # 100 hits are 10 shares: a few commands each (the count with its expiry, the expiry's
    # read, a script load, INFO), not one or more per hit.
    assert 0 < spent <= 100 // lease_share(parse("1000/minute")) * 4


def test_a_limit_counted_in_shares_answers_retry_after_and_holds_while_redis_is_down(
    redis: RedisServer,
) -> None:
    limiter = RateLimiter(redis.url, key_prefix=f"t-{uuid.uuid4().hex}", timeout=0.2)

    async def spend_then_refuse() -> tuple[int, str]:
        allowed = await leased_hits_allowed([limiter], "3/minute", "someone", 5)
        try:
            await limiter.hit_leased(parse("3/minute"), "test", "someone")
        except TooManyRequestsError as refused:
            return allowed, (refused.headers or {}).get("Retry-After", "")
        return allowed, ""

    allowed, retry_after = asyncio.run(spend_then_refuse())
    assert allowed == 3
    assert 1 <= int(retry_after) <= 60
    assert redis.command("DBSIZE") != ":0"  # counted in Redis
    redis.stop()
    assert asyncio.run(leased_hits_allowed([limiter], "3/minute", "someone-else", 5)) == 3


def test_once_a_window_is_spent_refusals_cost_the_store_nothing(redis: RedisServer) -> None:
    limiter = RateLimiter(redis.url, key_prefix=f"t-{uuid.uuid4().hex}", timeout=0.5)
    with Redis.from_url(redis.url) as store:

        async def scenario() -> tuple[int, int, int]:
            allowed = await leased_hits_allowed([limiter], "3/minute", "someone", 4)
            before = commands_processed(store)
            refused_later = 20 - await leased_hits_allowed([limiter], "3/minute", "someone", 20)
            return allowed, refused_later, commands_processed(store) - before

        allowed, refused_later, spent = asyncio.run(scenario())
    assert (allowed, refused_later) == (3, 20)
    assert spent <= 1  # the INFO that measured it
