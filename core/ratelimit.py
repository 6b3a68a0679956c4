"""Rate limits counted in Redis when configured (shared by every worker and instance), in
process memory otherwise. Counting is done by the `limits` library, not by hand."""

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from core import metrics
from core.errors import ServiceUnavailableError, TooManyRequestsError

logger = logging.getLogger("app.ratelimit")


class RateLimiter:
    def __init__(self, redis_url: str, key_prefix: str = "ratelimit") -> None:
        self.shared = bool(redis_url)
        if redis_url:
            uri = "async+" + redis_url
            options: dict[str, float | str | bool] = {
                "implementation": "redispy",
                "key_prefix": key_prefix,
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
            }
        else:
            uri, options = "async+memory://", {}
        self._store_errors: tuple[type[BaseException], ...] = (OSError,)
        if redis_url:
            # Imported only when used: redis-py adds about 6 MiB and 90 ms of start-up to
            # every worker, which a deployment without Redis should not pay.
            from redis.exceptions import RedisError

            self._store_errors = (RedisError, OSError)
        storage = storage_from_string(uri, **options)
        assert isinstance(storage, Storage)  # the async+ scheme always gives an async storage
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._key_prefix = key_prefix

    async def hit(self, limit: RateLimitItem, namespace: str, *keys: str) -> None:
        """Count one hit against every key; refuse (429) when any of them is over its limit.

        When the shared counter store is down, refuse with 503 rather than let a brute force
        through unmetered.
        """
        retry_after = 0
        try:
            for key in keys:
                identifiers = (self._key_prefix, namespace, key)
                if not await self._strategy.hit(limit, *identifiers):
                    stats = await self._strategy.get_window_stats(limit, *identifiers)
                    retry_after = max(retry_after, math.ceil(stats.reset_time - time.time()))
        except self._store_errors as error:
            logger.warning("rate limit store unavailable: %s", type(error).__name__)
            raise ServiceUnavailableError from error
        if retry_after:
            metrics.record_rate_limit_rejection(namespace)
            raise TooManyRequestsError(retry_after_seconds=retry_after)

    async def ping(self) -> bool:
        return bool(await self._storage.check())


def parse_limit(notation: str) -> RateLimitItem | None:
    """`10/minute` -> a limit; an empty string means no limit."""
    return parse(notation) if notation.strip() else None
