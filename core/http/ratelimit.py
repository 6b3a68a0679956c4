"""Rate limits counted in Redis when configured (shared by every worker and instance), in
process memory otherwise. Counting is done by the `limits` library, not by hand.

When Redis cannot be reached (or answers slower than the timeout), counting goes on in this
process's memory until Redis answers again: every limit still holds per process, so a brute
force stays metered, and the routes stay up. Redis is left alone for the back-off after a
failure, so an outage costs one timeout per worker and back-off, not one per request.

Keys are what a limit counts per (an address, an account): they reach Redis only as a digest
of fixed length, so no input, however long or odd, becomes a key of its own size, and Redis
holds no address in clear.

A limit checked on every request of a hot path (an API key's) is counted in shares instead
(`hit_leased`): one store round trip per share, not per request.
"""

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from core.errors import TooManyRequestsError
from core.observability import metrics

logger = logging.getLogger("app.ratelimit")

T = TypeVar("T")

# IPv6 hands a whole /64 to one subscriber: counting per address there would give one
# attacker 2^64 budgets.
IPV6_PREFIX_LENGTH = 64


def _async_storage(uri: str, **options: float | str | bool) -> Storage:
    storage = storage_from_string(uri, **options)
    assert isinstance(storage, Storage)  # the async+ scheme always gives an async storage
    return storage


def address_key(client_ip: str) -> str:
    """What limits per client address count by: the IPv4 address, or the IPv6 /64 its
    address is in."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return f"address:{client_ip}"
    if address.version == 6:
        network = ipaddress.ip_network(f"{address}/{IPV6_PREFIX_LENGTH}", strict=False)
        return f"address:{network}"
    return f"address:{address}"


# A share is this fraction of the limit (at most LEASE_MAX_SHARE hits): what a process may hold
# unused at a window's end, so what the limit may fall short by, per process.
LEASE_FRACTION = 100
LEASE_MAX_SHARE = 100
# Shares a process remembers at most (one per key in use this window).
LEASES_REMEMBERED = 10_000


def lease_share(limit: RateLimitItem) -> int:
    """How many hits `hit_leased` takes from the shared count at a time under `limit`."""
    return max(1, min(LEASE_MAX_SHARE, limit.amount // LEASE_FRACTION))


@dataclass
class _Lease:
    remaining: int
    window_ends: float  # time.time() when the shared count it came from expires
    # The shared count had nothing left to give: refuse until the window ends, without asking.
    window_spent: bool = False


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RateLimiter:
    def __init__(
        self,
        redis_url: str,
        key_prefix: str = "ratelimit",
        *,
        timeout: float = 0.1,
        backoff: float = 2.0,
    ) -> None:
        self.shared = bool(redis_url)
        self._key_prefix = key_prefix
        self._timeout = timeout
        self._backoff = backoff
        self._unavailable_until = 0.0
        self._local = MovingWindowRateLimiter(_async_storage("async+memory://"))
        self._leases: dict[tuple[str, ...], _Lease] = {}
        self._storage: Storage | None = None
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            self._storage = _async_storage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=key_prefix,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
            self._shared = MovingWindowRateLimiter(self._storage)

    def _identifier(self, namespace: str, key: str) -> tuple[str, str, str]:
        return (self._key_prefix, namespace, _digest(key))

    async def _counted(self, count: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        """`count(strategy)` on the shared store, or in this process while it is unavailable."""
        if self._shared is not None and time.monotonic() >= self._unavailable_until:
            try:
                async with asyncio.timeout(self._timeout):
                    return await count(self._shared)
            except TooManyRequestsError:
                raise
            except Exception as error:  # any store failure: count here instead
                self._unavailable_until = time.monotonic() + self._backoff
                logger.warning(
                    "rate limit store unavailable (%s): counting in this process for %.0f s",
                    type(error).__name__,
                    self._backoff,
                )
        return await count(self._local)

    async def hit(self, limit: RateLimitItem, namespace: str, *keys: str) -> None:
        """Count one hit against every key; refuse (429) when any of them is over its limit."""
        metrics.expect_rate_limit(namespace)
        identifiers = [self._identifier(namespace, key) for key in keys]
        await self._counted(lambda strategy: _count(strategy, limit, identifiers))

    async def hit_leased(self, limit: RateLimitItem, namespace: str, key: str) -> None:
        """Count one hit against `key`; refuse (429) when it is over `limit`. For a limit
        checked on every request of a hot path: this process takes hits from the shared count
        a share at a time (`lease_share`: a hundredth of the limit, at most 100) and spends them
        without asking the store, so the store sees one round trip (and a TTL read) per share,
        not one per request (an API key's /users/me: 1.24x -> 1.05x the CPU of an access
        token's, in-process).

        Counted in fixed windows of the limit's period. Every process together never admits
        more than `limit` in a window; they may admit less, by at most the unspent part of one
        share per process, lost when the window ends. Once the shared count has nothing left,
        this process refuses until the window ends without asking the store (a flood of 429s
        costs no round trip each). While the store is unreachable, shares come from this
        process's memory, so the limit holds per process."""
        metrics.expect_rate_limit(namespace)
        identifier = (*self._identifier(namespace, key), "leased")
        now = time.time()
        lease = self._leases.get(identifier)
        if lease is not None and now < lease.window_ends:
            if lease.remaining > 0:
                lease.remaining -= 1
                return
            if lease.window_spent:
                self._refuse(limit, namespace, lease)
        share = lease_share(limit)
        storage_key = limit.key_for(*identifier)

        async def take(strategy: MovingWindowRateLimiter) -> _Lease:
            total = await strategy.storage.incr(storage_key, limit.get_expiry(), amount=share)
            granted = min(share, limit.amount - (total - share))
            return _Lease(max(0, granted), await strategy.storage.get_expiry(storage_key))

        taken = await self._counted(take)
        # A lease of this window that another request of this process took meanwhile stays.
        current = self._leases.get(identifier)
        if current is not None and time.time() < current.window_ends:
            taken.remaining += current.remaining
        if len(self._leases) >= LEASES_REMEMBERED:
            self._leases = {k: v for k, v in self._leases.items() if v.window_ends > now}
        self._leases[identifier] = taken
        if taken.remaining == 0:
            taken.window_spent = True
            self._refuse(limit, namespace, taken)
        taken.remaining -= 1

    @staticmethod
    def _refuse(limit: RateLimitItem, namespace: str, lease: _Lease) -> NoReturn:
        metrics.record_rate_limit_rejection(namespace)
        # The store's TTL is in whole seconds: never more than the window itself.
        wait = min(limit.get_expiry(), math.ceil(lease.window_ends - time.time()))
        raise TooManyRequestsError(retry_after_seconds=wait)

    async def record(self, limit: RateLimitItem, namespace: str, key: str) -> None:
        """Count one hit against `key` without refusing anything (failures, say)."""
        identifier = self._identifier(namespace, key)

        async def count(strategy: MovingWindowRateLimiter) -> None:
            await strategy.hit(limit, *identifier)

        await self._counted(count)

    async def wait_seconds(self, limit: RateLimitItem, namespace: str, key: str) -> int:
        """0 while `key` has room under `limit`; else the seconds until it has, at least 1."""
        identifier = self._identifier(namespace, key)

        async def check(strategy: MovingWindowRateLimiter) -> int:
            if await strategy.test(limit, *identifier):
                return 0
            stats = await strategy.get_window_stats(limit, *identifier)
            return max(1, math.ceil(stats.reset_time - time.time()))

        return await self._counted(check)

    async def ping(self) -> bool:
        if self._storage is None:
            return True
        try:
            async with asyncio.timeout(max(self._timeout, 1.0)):
                return bool(await self._storage.check())
        except Exception:
            return False


async def _count(
    strategy: MovingWindowRateLimiter,
    limit: RateLimitItem,
    identifiers: list[tuple[str, str, str]],
) -> None:
    """Count one hit per key; 429, with the longest wait, when any key is over its limit."""
    refused = False
    retry_after = 0
    for identifier in identifiers:
        if not await strategy.hit(limit, *identifier):
            refused = True
            stats = await strategy.get_window_stats(limit, *identifier)
            retry_after = max(retry_after, math.ceil(stats.reset_time - time.time()))
    if refused:
        metrics.record_rate_limit_rejection(identifiers[0][1])
        raise TooManyRequestsError(retry_after_seconds=retry_after)


def parse_limit(notation: str) -> RateLimitItem | None:
    """`10/minute` -> a limit; an empty string means no limit."""
    return parse(notation) if notation.strip() else None


def once_per_window(limit: RateLimitItem) -> RateLimitItem:
    """One hit per `limit`'s window: "has this happened within the window?"."""
    return type(limit)(1, limit.multiples)
