"""A cache for database reads and GET responses: in Redis (REDIS_URL, shared by every worker and
instance) or in each process's memory (no REDIS_URL), through cashews.

Correctness comes from versioned tags, not from deleting entries. Every entry is stored with
the versions its tags had when the value was read, and is served only while every one of those
tags still has that version. A write changes the version of each tag it touches (after its
transaction commits, before its response is sent), and versions are random and never reused.
So a reader that took its database snapshot before the write cannot make its value current:
either it read the old version (its entry is dead as soon as the write's new version is set), or
it read the new version, which exists only after the commit, so its snapshot is newer than the
write. A tag with no version yet is given a fresh one before the read, never read as "none";
entries lost to eviction or FLUSHALL are simply misses. This holds for any number of workers
and instances on one Redis primary (a replica promoted after losing writes would break it).

When Redis cannot be reached a write cannot move its tags. `invalidate` then just logs: the
entries it meant to end expire within their TTL. `revoke` (for what decides whether a token is
still good) waits until every entry that could still hold the old state has expired, so once
the response that revoked a token is sent, no worker accepts that token again. Redis trouble
costs speed, never correctness: a failed or slow call (`CACHE_TIMEOUT_SECONDS`) counts as a
miss, and the cache is skipped for `CACHE_BACKOFF_SECONDS` before it is tried again, so an
outage costs one timeout per worker, not one per request.

Values are JSON and signed with a key derived from SECRET_KEY: whoever can write to Redis still
cannot forge an entry.
"""

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from cashews import Cache as Backend
from cashews.exceptions import SignIsMissingError, UnSecureDataError
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from core import metrics

logger = logging.getLogger("app.cache")

SchemaT = TypeVar("SchemaT", bound=BaseModel)
Json = Any

# A tag's version outlives every entry stored under it; when it expires, the tag simply gets
# a fresh version and its old entries are misses.
TAG_VERSION_TTL_SECONDS = 24 * 3600
# How long a waiting `revoke` adds to the entries' TTL, for the time between a reader reading
# a version and Redis counting its entry's TTL.
REVOKE_MARGIN_SECONDS = 1.0
# What cashews raises for a value that does not carry this cache's signature.
Unverifiable = (UnSecureDataError, SignIsMissingError)
_PENDING = "cache.pending"
_COMMITTED = "cache.committed"


@dataclass(frozen=True, slots=True)
class Lookup:
    """What `get` found: a value, or what a miss needs to store one."""

    key: str
    value: Json | None
    # The tags' versions before the value was read; None when the cache is unavailable and
    # nothing read now may be stored.
    versions: tuple[str, ...] | None
    started: float

    @property
    def hit(self) -> bool:
        return self.value is not None


class Cache:
    def __init__(
        self,
        redis_url: str,
        *,
        secret: str,
        timeout: float = 0.1,
        backoff: float = 2.0,
        revocable_ttl: float = 10.0,
        memory_entries: int = 10_000,
        key_prefix: str = "cache",
    ) -> None:
        self.shared = bool(redis_url)
        self.revocable_ttl = revocable_ttl
        self._timeout = timeout
        self._backoff = backoff
        self._unavailable_until = 0.0
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self.hits = self.misses = self.errors = 0
        signing_key = hashlib.sha256(f"cache:{secret}".encode()).hexdigest()
        # Each signing key has a key space of its own: after a SECRET_KEY rotation (or beside
        # another deployment on the same Redis) nothing signed with another key is ever read.
        self._prefix = f"{key_prefix}:{signing_key[:12]}"
        self._backend = Backend()
        if redis_url:
            self._backend.setup(
                redis_url,
                suppress=False,
                pickle_type="json",
                secret=signing_key,
                digestmod="sha256",
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # Enough connections for a worker's concurrent requests, and no queue behind
                # them: a request that cannot get one within the timeout reads the database.
                max_connections=64,
                wait_for_connection_timeout=timeout,
                health_check_interval=0,
                client_name="app-cache",
            )
        else:
            self._backend.setup(
                f"mem://?size={memory_entries}",
                pickle_type="json",
                secret=signing_key,
                digestmod="sha256",
            )

    # --- the store, behind a fast timeout and a back-off ----------------------------------

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._unavailable_until

    def _failed(self, operation: str, error: BaseException) -> None:
        self.errors += 1
        metrics.record_cache("store", "error")
        if self.available:
            logger.warning(
                "cache unavailable (%s: %s): reading the database for %.0f s",
                operation,
                type(error).__name__,
                self._backoff,
            )
        self._unavailable_until = time.monotonic() + self._backoff

    async def _call(self, operation: str, call: Awaitable[Any]) -> tuple[bool, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                return True, await call
        except Unverifiable:
            raise  # not a store failure: somebody wrote a value without the signing key
        except Exception as error:  # any store failure is a miss, never an error response
            self._failed(operation, error)
            return False, None

    async def _read_verified(self, key: str, tags: tuple[str, ...]) -> list[Any] | None:
        """The entry and the tags' versions one by one, after a value did not carry this
        cache's signature (written by whoever reached Redis without the key). Such a value is
        deleted and read as missing: a missing entry is a miss, and a missing version is
        replaced by a fresh one before any read, which can only end entries."""
        logger.warning("cache values without a valid signature under %s: deleted", key)
        values: list[Any] = []
        for store_key in (self._entry_key(key), *(self._tag_key(tag) for tag in tags)):
            try:
                ok, value = await self._call("get", self._backend.get(store_key))
            except Unverifiable:
                ok, value = (await self._call("delete", self._backend.delete(store_key)))[0], None
            if not ok:
                return None
            values.append(value)
        return values

    def _tag_key(self, tag: str) -> str:
        return f"{self._prefix}:tag:{tag}"

    def _entry_key(self, key: str) -> str:
        return f"{self._prefix}:entry:{key}"

    async def start(self) -> None:
        await self._backend.init()

    async def ping(self) -> bool:
        ok, answer = await self._call("ping", self._backend.ping())
        return ok and bool(answer)

    async def close(self) -> None:
        await self._backend.close()

    # --- reads -------------------------------------------------------------------------------

    async def get(self, key: str, tags: tuple[str, ...]) -> Lookup:
        """The entry for `key` if it was stored under the tags' current versions."""
        started = time.monotonic()
        if not self.available:
            return Lookup(key, None, None, started)
        tag_keys = [self._tag_key(tag) for tag in tags]
        try:
            ok, found = await self._call(
                "get", self._backend.get_many(self._entry_key(key), *tag_keys)
            )
        except Unverifiable:
            found = await self._read_verified(key, tags)
            ok = found is not None
        if not ok or found is None:
            return Lookup(key, None, None, started)
        entry, found_versions = found[0], tuple(found[1:])
        versions = (
            await self._create_versions(tags, found_versions)
            if None in found_versions
            else found_versions
        )
        if versions is None:
            return Lookup(key, None, None, started)
        kind = key.partition(":")[0]  # "account", "response": a fixed set, never a key
        if (
            isinstance(entry, dict)
            and tuple(entry.get("versions", ())) == versions
            and entry.get("value") is not None
        ):
            self.hits += 1
            metrics.record_cache(kind, "hit")
            return Lookup(key, entry["value"], versions, started)
        self.misses += 1
        metrics.record_cache(kind, "miss")
        return Lookup(key, None, versions, started)

    async def _create_versions(
        self, tags: tuple[str, ...], versions: tuple[str | None, ...]
    ) -> tuple[str, ...] | None:
        """Give each tag without a version a fresh one (unless another worker just did), then
        read them all: the versions a value read from now on is stored under. A version that
        is there but unreadable (not signed with this cache's key) is replaced: a fresh
        version only ends the entries under the tag."""
        missing = [tag for tag, version in zip(tags, versions, strict=True) if version is None]
        for only_if_absent in (True, False):
            for tag in missing:
                ok, _ = await self._call(
                    "set",
                    self._backend.set(
                        self._tag_key(tag),
                        secrets.token_hex(16),
                        expire=TAG_VERSION_TTL_SECONDS,
                        exist=False if only_if_absent else None,
                    ),
                )
                if not ok:
                    return None
            ok, found = await self._call(
                "get", self._backend.get_many(*(self._tag_key(tag) for tag in tags))
            )
            if not ok:
                return None
            if None not in found:
                return tuple(found)
            missing = [tag for tag, version in zip(tags, found, strict=True) if version is None]
        return None

    async def put(self, lookup: Lookup, value: Json, ttl: float) -> None:
        """Store what a miss read. Its TTL counts from before the read, so an entry never
        outlives the state it was read from by more than `ttl`."""
        if lookup.versions is None or value is None or not self.available:
            return
        remaining = ttl - (time.monotonic() - lookup.started)
        if remaining <= 0:
            return
        entry = {"versions": list(lookup.versions), "value": value}
        await self._call(
            "set", self._backend.set(self._entry_key(lookup.key), entry, expire=remaining)
        )

    async def fetch(
        self,
        key: str,
        *,
        tags: tuple[str, ...],
        schema: type[SchemaT],
        load: Callable[[], Awaitable[SchemaT | None]],
        ttl: float | None = None,
        revocable: bool = False,
    ) -> SchemaT | None:
        """`schema` from the cache, or from `load()` (then stored). Concurrent misses for one
        key in this process share one `load()`.

        `revocable`: the value decides whether a token is still good. It is then cached only
        in Redis, for `revocable_ttl` (a process's own memory cannot hear about a revocation
        made through another worker), and its tags must be moved with `revoke`.
        """
        if revocable and not self.shared:
            return await load()
        lookup = await self.get(key, tags)
        if lookup.hit:
            return schema.model_validate(lookup.value)
        loaded: SchemaT | None = await self.single_flight(lookup.key, load)
        if loaded is not None:
            entry_ttl = self.revocable_ttl if revocable or ttl is None else ttl
            await self.put(lookup, loaded.model_dump(mode="json"), entry_ttl)
        return loaded

    async def single_flight(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """Run `load()` once for concurrent callers with the same key (stampede protection)."""
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await load()
        except BaseException as error:
            future.set_exception(error)
            # Whoever waits sees the error; nobody else has to retrieve it.
            future.exception()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    # --- writes ------------------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str]) -> bool:
        """Move each tag to a fresh version: every entry stored under it is dead. False when
        the store could not be reached (tried even during a back-off: this matters)."""
        versions = {self._tag_key(tag): secrets.token_hex(16) for tag in tags}
        if not versions:
            return True
        ok, _ = await self._call(
            "invalidate", self._backend.set_many(versions, expire=TAG_VERSION_TTL_SECONDS)
        )
        if not ok:
            logger.warning("cache tags not moved: their entries expire within their TTL")
        return ok

    async def revoke(self, tags: Iterable[str]) -> None:
        """Like `invalidate`, for tags whose entries decide whether a token is still good
        (stored with at most `revocable_ttl`): when the store cannot be reached, wait until
        every such entry has expired before going on, so no worker can serve one after."""
        if not await self.invalidate(tags):
            await asyncio.sleep(self.revocable_ttl + REVOKE_MARGIN_SECONDS)


# --- invalidation from inside a unit of work ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invalidation:
    tags: frozenset[str]
    revoked: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Pending:
    tag: str
    revoked: bool
    # The transaction (or savepoint) the change was made in: its rollback forgets it.
    transaction: SessionTransaction


def invalidate_on_commit(session: Session, *tags: str) -> None:
    """Cached entries under these tags die once this session's transaction commits (and
    before the response is sent: core/db.py applies it after the unit of work). A rollback
    of the transaction, or of the savepoint, the call was made in forgets them."""
    _add(session, tags, revoked=False)


def revoke_on_commit(session: Session, *tags: str) -> None:
    """Like `invalidate_on_commit`, for tags whose entries decide whether a token is still
    good: with Redis unreachable, the response waits until no worker can serve them."""
    _add(session, tags, revoked=True)


def committed_invalidation(session: Session) -> Invalidation | None:
    """What the session's commits asked to invalidate, taken once."""
    committed: list[_Pending] | None = session.info.pop(_COMMITTED, None)
    if not committed:
        return None
    return Invalidation(
        frozenset(item.tag for item in committed),
        frozenset(item.tag for item in committed if item.revoked),
    )


def _add(session: Session, tags: tuple[str, ...], *, revoked: bool) -> None:
    pending: list[_Pending] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _on_commit)
        event.listen(session, "after_soft_rollback", _on_rollback)
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:  # nothing read or written yet: the session begins now
        transaction = session.begin()
    pending.extend(_Pending(tag, revoked, transaction) for tag in tags)


def _on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: its changes wait for the outer commit
    pending: list[_Pending] = session.info.get(_PENDING, [])
    session.info.setdefault(_COMMITTED, []).extend(pending)
    pending.clear()


def _on_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])

    def inside(transaction: SessionTransaction | None) -> bool:
        while transaction is not None:
            if transaction is previous_transaction:
                return True
            transaction = transaction.parent
        return False

    pending[:] = [item for item in pending if not inside(item.transaction)]


async def apply(cache: Cache, invalidation: Invalidation) -> None:
    """Invalidate what a unit of work committed; revoked tags wait out an outage."""
    if invalidation.revoked:
        await cache.revoke(invalidation.tags)
    else:
        await cache.invalidate(invalidation.tags)
