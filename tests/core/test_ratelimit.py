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
from starlette.testclient import TestClient

from core.errors import TooManyRequestsError
from core.http.ratelimit import RateLimiter, address_key
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
