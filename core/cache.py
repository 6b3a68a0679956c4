"""A cache for database reads and GET responses: in Redis (REDIS_URL, shared by every worker and
instance) or in each process's memory (no REDIS_URL), through cashews.

Correctness comes from versioned tags, not from deleting entries. Every entry is stored with
the versions its tags had before its value was read, and is served only while every one of
those tags still has that version. A write changes the version of each tag it touches (after its
transaction commits, before its response is sent), and versions are random and never reused.
So a reader that took its database snapshot before the write cannot make its value current:
either it read the old version (its entry is dead as soon as the write's new version is set), or
it read the new version, which exists only after the commit, so its snapshot is newer than the
write. Readers that share one database read (concurrent misses) must have seen the same
versions. A tag with no version yet is given a fresh one before the read, never read as "none";
entries lost to eviction or FLUSHALL are simply misses. This holds for any number of workers
and instances on one Redis primary (a replica promoted after losing writes would break it).

When Redis cannot be reached a write cannot move its tags. `invalidate` then just logs: the
entries it meant to end expire within their TTL. `revoke` (for what decides whether a token is
still good) waits until every entry that could still hold the old state has expired, so once
the response that revoked a token is sent, no worker accepts that token again. Every entry
carries its absolute expiry, counted from before its value was read and checked on every
read, so an entry that reaches Redis late, or is written back later, cannot outlive it. Redis
trouble costs speed, never correctness: a failed or slow call (`REDIS_TIMEOUT_SECONDS`) counts
as a miss, and the cache is skipped for `REDIS_BACKOFF_SECONDS` before it is tried again, so an
outage costs one timeout per worker, not one per request.

Every value is JSON signed here with HMAC-SHA256 (a key derived from SECRET_KEY) over its key,
its content and its expiry: whoever can write to Redis without that key can neither plant an
entry nor a version, nor bring back one that has expired. A value that fails the check is
treated as missing.
"""

import asyncio
import collections
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from cashews import Cache as Backend
from cashews.exceptions import BackendNotAvailableError
from pydantic import BaseModel, TypeAdapter
from redis.exceptions import RedisError

from core.observability import metrics

logger = logging.getLogger("app.cache")

SchemaT = TypeVar("SchemaT", bound=BaseModel)
ValueT = TypeVar("ValueT")
Json = Any

# A tag's version outlives every entry stored under it; when it expires, the tag simply gets
# a fresh version and its old entries are misses.
TAG_VERSION_TTL_SECONDS = 24 * 3600
# What a waiting `revoke` adds to the entries' TTL: clock differences between the instances
# that write entries and the one that waits (entries expire by the writer's clock).
REVOKE_MARGIN_SECONDS = 1.0
# Claims a process remembers on its own while the store is away; expired ones go past this.
LOCAL_CLAIMS_LIMIT = 10_000
_SIGNATURE = re.compile(b"[0-9a-f]{64}")
# What a failing store raises; anything else (a value cashews cannot decode) is a miss for
# that key, never a reason to stop using the store.
_STORE_ERRORS = (RedisError, OSError, TimeoutError, BackendNotAvailableError)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What `get` found: a value, or what a miss needs to store one."""

    key: str
    value: Json | None
    # The tags' versions before the value was read; None when the cache is unavailable and
    # nothing read now may be stored.
    versions: tuple[str, ...] | None
    # Wall-clock time before the versions were read: a value read now expires by this + TTL.
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
        timeout: float = 0.25,
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
        # Claims made while the store is unreachable: per process, until each expires.
        self._local_claims: dict[str, float] = {}
        # Hits by kind ("account", "response"), read by tests; metrics.record_cache counts
        # for operators.
        self.hits: collections.Counter[str] = collections.Counter()
        self._signing_key = hmac.new(secret.encode(), b"cache-signing", hashlib.sha256).digest()
        # Each SECRET_KEY has a key space of its own, named by a digest that says nothing
        # about the signing key: after a rotation, or beside another deployment on the same
        # Redis, nothing signed with another key is even read.
        space = hmac.new(secret.encode(), b"cache-key-space", hashlib.sha256).hexdigest()[:12]
        self._prefix = f"{key_prefix}:{space}"
        self._backend = Backend()
        if redis_url:
            self._backend.setup(
                redis_url,
                suppress=False,
                # Values are bytes signed and parsed here: cashews stores them as they are,
                # and hands back None (never an exception) for anything it did not write.
                pickle_type="null",
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                max_connections=64,
                # A request waits this long at most for a free connection, then reads the
                # database: the pool never holds a request longer than Redis would.
                wait_for_connection_timeout=timeout,
                health_check_interval=0,
                client_name="app-cache",
            )
        else:
            self._backend.setup(f"mem://?size={memory_entries}", pickle_type="null")

    # --- signed values -----------------------------------------------------------------------

    def _sign(self, key: str, data: Json, expires_at: float) -> bytes:
        """`<signature>:<expiry>:<JSON>`: the content is JSON once, not JSON inside JSON,
        which halves the work of every read and write of a 100-row page (about 230 to 100 µs
        to open one, 240 to 140 µs to sign it)."""
        content = json.dumps(data, separators=(",", ":")).encode()
        expiry = repr(expires_at).encode()
        return self._signature(key, expiry, content) + b":" + expiry + b":" + content

    def _signature(self, key: str, expiry: bytes, content: bytes) -> bytes:
        message = key.encode() + b"\0" + expiry + b"\0" + content
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest().encode()

    def _open(self, key: str, stored: Any) -> Json | None:
        """The data of a value this cache signed and that has not expired; None for anything
        else, whatever is stored there (never an exception: a value is not an outage)."""
        if not isinstance(stored, bytes):
            return None
        try:
            signature, expiry, content = stored.split(b":", 2)
            if not _SIGNATURE.fullmatch(signature):
                return None
            if not hmac.compare_digest(self._signature(key, expiry, content), signature):
                return None
            if float(expiry) <= time.time():
                return None
            return json.loads(content)
        except Exception:  # malformed, too deep, not text: not a value this cache signed
            return None

    # --- the store, behind a fast timeout and a back-off ----------------------------------

    @property
    def timeout(self) -> float:
        """Longest a call to the store may take."""
        return self._timeout

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._unavailable_until

    def _failed(self, operation: str, error: BaseException) -> None:
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
        except _STORE_ERRORS as error:  # any store failure is a miss, never an error response
            self._failed(operation, error)
            return False, None
        except Exception as error:
            # A value only someone else can have written (cashews cannot decode it): a miss,
            # and the keys are dropped below, which is always safe (see the docstring).
            metrics.record_cache("store", "error")
            logger.warning("cache value unreadable (%s: %s)", operation, type(error).__name__)
            return False, None

    def _tag_key(self, tag: str) -> str:
        return f"{self._prefix}:tag:{tag}"

    def _entry_key(self, key: str) -> str:
        return f"{self._prefix}:entry:{key}"

    def _fresh_version(self, tag_key: str) -> bytes:
        """A new random version for a tag, signed: never reused, so it ends every entry stored
        under the tag's earlier versions."""
        return self._sign(tag_key, secrets.token_hex(16), time.time() + TAG_VERSION_TTL_SECONDS)

    def _read_versions(self, tag_keys: list[str], stored: list[Any]) -> tuple[str | None, ...]:
        """The versions as read, None for a tag with none readable (missing, not signed here,
        expired)."""
        return tuple(
            _version(self._open(tag_key, value))
            for tag_key, value in zip(tag_keys, stored, strict=True)
        )

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
        started = time.time()
        if not self.available:
            return Lookup(key, None, None, started)
        entry_key = self._entry_key(key)
        tag_keys = [self._tag_key(tag) for tag in tags]
        ok, found = await self._call("get", self._backend.get_many(entry_key, *tag_keys))
        if not ok:
            if self.available:  # the store answered, with something unreadable: drop it
                await self._call("delete", self._backend.delete_many(entry_key, *tag_keys))
            return Lookup(key, None, None, started)
        entry = self._open(entry_key, found[0])
        read_versions = self._read_versions(tag_keys, list(found[1:]))
        versions = (
            await self._create_versions(tags, read_versions)
            if None in read_versions
            else cast(tuple[str, ...], read_versions)
        )
        if versions is None:
            return Lookup(key, None, None, started)
        kind = key.partition(":")[0]  # "account", "response": a fixed set, never a key
        if (
            isinstance(entry, dict)
            and tuple(entry.get("versions", ())) == versions
            and entry.get("value") is not None
        ):
            self.hits[kind] += 1
            metrics.record_cache(kind, "hit")
            return Lookup(key, entry["value"], versions, started)
        metrics.record_cache(kind, "miss")
        return Lookup(key, None, versions, started)

    async def _create_versions(
        self, tags: tuple[str, ...], versions: tuple[str | None, ...]
    ) -> tuple[str, ...] | None:
        """Give each tag without a readable version a fresh one, then read them all: the
        versions a value read from now on is stored under. A version that is there but not
        readable (not signed here, or expired) is replaced: a fresh version only ends the
        entries under its tag."""
        tag_keys = [self._tag_key(tag) for tag in tags]
        missing = [key for key, version in zip(tag_keys, versions, strict=True) if version is None]
        for only_if_absent in (True, False):
            for tag_key in missing:
                ok, _ = await self._call(
                    "set",
                    self._backend.set(
                        tag_key,
                        self._fresh_version(tag_key),
                        expire=TAG_VERSION_TTL_SECONDS,
                        exist=False if only_if_absent else None,
                    ),
                )
                if not ok:
                    return None
            ok, found = await self._call("get", self._backend.get_many(*tag_keys))
            if not ok:
                return None
            opened = self._read_versions(tag_keys, list(found))
            if None not in opened:
                return cast(tuple[str, ...], opened)
            missing = [key for key, got in zip(tag_keys, opened, strict=True) if got is None]
        return None

    async def put(self, lookup: Lookup, value: Json, ttl: float) -> None:
        """Store what a miss read. It expires `ttl` after its versions were read, by the wall
        clock, whenever it reaches Redis: an entry never outlives the state it was read from by
        more than `ttl`."""
        if lookup.versions is None or value is None or not self.available:
            return
        expires_at = lookup.started + ttl
        remaining = expires_at - time.time()
        if remaining <= 0:
            return
        entry_key = self._entry_key(lookup.key)
        entry = self._sign(
            entry_key, {"versions": list(lookup.versions), "value": value}, expires_at
        )
        await self._call("set", self._backend.set(entry_key, entry, expire=remaining))

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
        key that saw the same versions share one `load()`.

        `revocable`: the value decides whether a token is still good. It is then cached only
        in Redis, for `revocable_ttl` (a process's own memory cannot hear about a revocation
        made through another worker), and its tags must be moved with `revoke`.
        """
        if revocable and not self.shared:
            return await load()
        entry_ttl = self.revocable_ttl if revocable or ttl is None else ttl

        async def load_json() -> Json | None:
            loaded = await load()
            return None if loaded is None else loaded.model_dump(mode="json")

        lookup = await self.get(f"{key}:{schema_fingerprint(schema)}", tags)
        if lookup.hit:
            return schema.model_validate(lookup.value)
        value = await self.single_flight(lookup, load_json, entry_ttl)
        return None if value is None else schema.model_validate(value)

    async def single_flight(
        self, lookup: Lookup, produce: Callable[[], Awaitable[ValueT]], ttl: float
    ) -> ValueT:
        """Run `produce()` once for concurrent misses of one key that saw the same versions
        (stampede protection) and store what it returns for `ttl`; the others share its
        result. A miss that saw other versions never shares a read that may predate them. The
        work runs as a task of its own: a caller that goes away does not cancel it for the
        others."""
        if lookup.versions is None:  # the store is unavailable: nothing to share or store
            return await produce()

        async def produce_and_store() -> ValueT:
            value = await produce()
            await self.put(lookup, value, ttl)  # put stores nothing for None
            return value

        flight = f"{lookup.key}|{','.join(lookup.versions)}"
        running = self._inflight.get(flight)
        if running is None:
            running = asyncio.ensure_future(produce_and_store())
            self._inflight[flight] = running
            running.add_done_callback(lambda _: self._inflight.pop(flight, None))
            running.add_done_callback(_retrieve_outcome)
        return await asyncio.shield(running)

    async def claim(self, name: str, seconds: float) -> bool:
        """True for the first caller to claim `name` within `seconds`, on every worker and
        instance sharing the store (Redis SET NX), so a chore that must run at most once a
        period (writing when an API key was last used) runs once. While the store cannot be
        reached each process claims on its own, once per period.

        A process that has seen `name` claimed (by itself or by another) does not ask the
        store again for `seconds`: a chore tried on every request costs one store round trip
        per period and process, not one per request (an API key's request, whose cached entry
        still shows the last use it was loaded with: 1.28 -> 1.05 CPU ms in-process). The
        chore then runs at least once every two periods wherever the traffic goes."""
        key = f"{self._prefix}:claim:{name}"
        now = time.monotonic()
        if self._local_claims.get(key, 0.0) > now:
            return False
        claimed = True
        if self.available:
            ok, answer = await self._call(
                "claim", self._backend.set(key, b"1", expire=seconds, exist=False)
            )
            if ok:
                claimed = bool(answer)
        if len(self._local_claims) >= LOCAL_CLAIMS_LIMIT:
            self._local_claims = {
                k: until for k, until in self._local_claims.items() if until > now
            }
        self._local_claims[key] = now + seconds
        return claimed

    # --- writes ------------------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str]) -> bool:
        """Move each tag to a fresh version: every entry stored under it is dead. False when
        the store could not be reached (tried even during a back-off: this matters)."""
        versions = {key: self._fresh_version(key) for key in map(self._tag_key, tags)}
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


def _retrieve_outcome(task: "asyncio.Future[Any]") -> None:
    """Every caller of a shared load may have gone away: its error is theirs, not a log line
    saying nobody looked at it."""
    if not task.cancelled():
        task.exception()


@functools.cache
def schema_fingerprint(schema: Any) -> str:
    """A short digest of a value's JSON schema, part of its key: after a release changes a
    cached shape, old and new code (side by side in a rolling update) never read each
    other's entries."""
    described = (
        schema.model_json_schema()
        if isinstance(schema, type) and issubclass(schema, BaseModel)
        else TypeAdapter(schema).json_schema()
    )
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]


def _version(opened: Json | None) -> str | None:
    return opened if isinstance(opened, str) else None
