"""core/cache.py against a real Redis of the test's own (and against process memory): what a
write invalidates is never served again, whatever order readers and writers interleave in,
and a Redis that fails costs speed, never an error."""

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis as redis_client
from pydantic import BaseModel
from sqlmodel import Session

from core.cache import Cache
from core.data.db import Database
from core.data.invalidation import invalidate_on_commit, revoke_on_commit
from tests.support import RedisServer, redis_server

T = TypeVar("T")
SECRET = "cache-test-secret-key-0123456789-abcdefgh"
TAGS = ("user:1",)


# cashews marks the bytes it stores with this prefix; what follows is the cache's signed
# value. Tests that play an attacker with write access to Redis write the same way.
STORED = b"bytes:"


@dataclass(frozen=True)
class Signed:
    """A value as the cache stores it: `<signature>:<expiry>:<JSON content>`."""

    signature: bytes
    expiry: bytes
    content: bytes

    def raw(self) -> bytes:
        return self.signature + b":" + self.expiry + b":" + self.content


def read_stored(store: Any, key: bytes | str) -> Signed:
    raw: bytes = store.get(key)
    assert raw.startswith(STORED)
    signature, expiry, content = raw[len(STORED) :].split(b":", 2)
    return Signed(signature, expiry, content)


def write_stored(store: Any, key: bytes | str, value: str | bytes) -> None:
    store.set(key, STORED + (value.encode() if isinstance(value, str) else value))


def unsigned(content: Any) -> bytes:
    """A well-formed value with a signature made up without the key."""
    return Signed(b"0" * 64, repr(time.time() + 60).encode(), json.dumps(content).encode()).raw()


class Account(BaseModel):
    name: str


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def _redis_or_skip(tmp_path: Path) -> Any:
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (apt-get install redis-server)")
    return redis_server(tmp_path)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with _redis_or_skip(tmp_path) as server:
        yield server


@pytest.fixture(params=["redis", "memory"])
def cache_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield ""
        return
    with _redis_or_skip(tmp_path) as server:
        yield server.url


def make_cache(
    url: str, *, timeout: float = 5.0, backoff: float = 2.0, revocable_ttl: float = 10.0
) -> Cache:
    # A generous timeout unless a test is about timeouts (those pass their own): on a busy
    # machine a store call slower than the app's 0.1 s is a miss by design, which would fail
    # a test about what is served.
    return Cache(url, secret=SECRET, timeout=timeout, backoff=backoff, revocable_ttl=revocable_ttl)


async def started(cache: Cache) -> Cache:
    await cache.start()
    return cache


class TestVersionedEntries:
    def test_a_value_read_before_a_write_is_never_served_after_it(self, cache_url: str) -> None:
        async def scenario() -> None:
            cache = await started(make_cache(cache_url))
            reader = await cache.get("account", TAGS)  # the reader's snapshot starts here
            assert await cache.invalidate(TAGS)  # the write commits and moves the tag
            await cache.put(reader, {"name": "stale"}, ttl=60)  # the slow reader stores
            assert not (await cache.get("account", TAGS)).hit
            fresh = await cache.get("account", TAGS)
            await cache.put(fresh, {"name": "fresh"}, ttl=60)
            assert (await cache.get("account", TAGS)).value == {"name": "fresh"}
            await cache.close()

        run(scenario)

    def test_a_write_ends_every_entry_under_its_tag(self, cache_url: str) -> None:
        async def scenario() -> None:
            cache = await started(make_cache(cache_url))
            for key in ("list", "item"):
                await cache.put(await cache.get(key, ("widgets:a", "shared")), [key], ttl=60)
            await cache.put(await cache.get("other", ("widgets:b",)), ["other"], ttl=60)
            assert await cache.invalidate(["shared"])
            assert not (await cache.get("list", ("widgets:a", "shared"))).hit
            assert not (await cache.get("item", ("widgets:a", "shared"))).hit
            assert (await cache.get("other", ("widgets:b",))).value == ["other"]
            await cache.close()

        run(scenario)

    def test_concurrent_misses_for_one_key_load_once(self, cache_url: str) -> None:
        loads = 0

        async def load() -> Account:
            nonlocal loads
            loads += 1
            await asyncio.sleep(0.05)
            return Account(name="loaded")

        async def scenario() -> list[Account | None]:
            cache = await started(make_cache(cache_url))
            found = await asyncio.gather(
                *(cache.fetch("k", tags=TAGS, schema=Account, load=load) for _ in range(20))
            )
            again = await cache.fetch("k", tags=TAGS, schema=Account, load=load)
            await cache.close()
            return [*found, again]

        results = run(scenario)
        assert loads == 1
        assert {result.name for result in results if result} == {"loaded"}

    def test_revocable_values_are_never_kept_in_process_memory(self) -> None:
        loads = 0

        async def load() -> Account:
            nonlocal loads
            loads += 1
            return Account(name="fresh")

        async def scenario() -> None:
            cache = await started(make_cache(""))
            for _ in range(3):
                await cache.fetch("k", tags=TAGS, schema=Account, load=load, revocable=True)
            await cache.close()

        run(scenario)
        # Another worker cannot tell this process about a revocation: every read is fresh.
        assert loads == 3

    def test_a_miss_never_shares_a_read_that_started_before_its_versions(
        self, cache_url: str
    ) -> None:
        """R1 reads the row, then a write commits and moves the tag; R2 misses under the new
        version and must read again, not take R1's older read (nor store it)."""
        database = {"name": "before the write"}
        r1_has_read = asyncio.Event()
        release_r1 = asyncio.Event()

        async def slow_load() -> Account:
            snapshot = Account(name=database["name"])
            r1_has_read.set()
            await release_r1.wait()
            return snapshot

        async def load() -> Account:
            return Account(name=database["name"])

        async def scenario() -> tuple[str | None, str | None, Any]:
            cache = await started(make_cache(cache_url))
            r1 = asyncio.ensure_future(cache.fetch("k", tags=TAGS, schema=Account, load=slow_load))
            await r1_has_read.wait()
            database["name"] = "after the write"
            assert await cache.invalidate(TAGS)
            r2 = await asyncio.wait_for(
                cache.fetch("k", tags=TAGS, schema=Account, load=load), timeout=5
            )
            release_r1.set()
            r1_result = await r1
            served_later = (await cache.get("k", TAGS)).value
            await cache.close()
            return (
                r1_result.name if r1_result else None,
                r2.name if r2 else None,
                served_later,
            )

        r1, r2, served_later = run(scenario)
        assert r1 == "before the write"  # R1 started first: its answer is its own snapshot
        assert r2 == "after the write"
        # R1's late store goes under the old version: a miss, never the old name.
        assert served_later in (None, {"name": "after the write"})

    def test_a_value_stored_after_its_ttl_ran_out_is_never_served(self, cache_url: str) -> None:
        """An entry expires `ttl` after its versions were read, however late it is stored."""

        async def scenario() -> Any:
            cache = await started(make_cache(cache_url))
            reader = await cache.get("account", TAGS)
            await asyncio.sleep(0.3)
            await cache.put(reader, {"name": "late"}, ttl=0.2)
            found = (await cache.get("account", TAGS)).value
            await cache.close()
            return found

        assert run(scenario) is None


class TestRedisTrouble:
    def test_a_flush_between_read_and_store_cannot_revive_a_value(self, redis: RedisServer) -> None:
        async def scenario() -> None:
            cache = await started(make_cache(redis.url))
            reader = await cache.get("account", TAGS)
            assert redis.command("FLUSHALL") == "+OK"
            await cache.put(reader, {"name": "read before the flush"}, ttl=60)
            # The tag has no version now: the next reader gets a fresh one, never the old.
            assert not (await cache.get("account", TAGS)).hit
            await cache.close()

        run(scenario)

    def test_values_written_without_the_key_are_misses_not_forgeries_or_outages(
        self, redis: RedisServer
    ) -> None:
        store = redis_client.Redis.from_url(redis.url)

        async def scenario() -> tuple[Any, Any, bool]:
            cache = await started(make_cache(redis.url))
            await cache.put(await cache.get("account", TAGS), {"name": "real"}, ttl=60)
            (key,) = store.keys("cache:*:entry:*")
            versions = [
                json.loads(read_stored(store, tag).content) for tag in store.keys("cache:*:tag:*")
            ]
            # Whoever can write to Redis but lacks the signing key cannot plant an entry,
            # even one that names the current versions...
            write_stored(store, key, unsigned({"versions": versions, "value": {"name": "forged"}}))
            forged_entry = (await cache.get("account", TAGS)).value
            # ...nor a tag version: an unreadable version only ends what it guarded.
            (tag_key,) = store.keys("cache:*:tag:*")
            write_stored(store, tag_key, unsigned("a version of the attacker's choosing"))
            forged_version = (await cache.get("account", TAGS)).value
            # And neither turns the cache off: the next value is stored and served.
            await cache.put(await cache.get("account", TAGS), {"name": "again"}, ttl=60)
            still_caching = (await cache.get("account", TAGS)).value == {"name": "again"}
            await cache.close()
            return forged_entry, forged_version, still_caching

        assert run(scenario) == (None, None, True)
        store.close()

    def test_a_signed_value_cannot_be_altered_or_downgraded(self, redis: RedisServer) -> None:
        store = redis_client.Redis.from_url(redis.url)

        async def scenario() -> list[Any]:
            cache = await started(make_cache(redis.url))
            await cache.put(
                await cache.get("account", TAGS), {"name": "real", "admin": False}, ttl=60
            )
            (key,) = store.keys("cache:*:entry:*")
            signed = read_stored(store, key)
            found = []
            # The real signature over other content...
            altered = replace(
                signed, content=signed.content.replace(b'"admin":false', b'"admin":true')
            )
            assert altered != signed
            # ...a later expiry under the old signature, and the weak signatures other
            # serializers accept (a byte sum, none at all).
            extended = replace(signed, expiry=repr(float(signed.expiry) + 3600).encode())
            for forged in (
                altered.raw(),
                extended.raw(),
                b"sum:123_" + signed.content,
                signed.content,
                "not json \xff".encode(),
            ):
                write_stored(store, key, forged)
                found.append((await cache.get("account", TAGS)).value)
                store.set(key, forged)  # and as cashews' own formats would read it
                found.append((await cache.get("account", TAGS)).value)
            write_stored(store, key, signed.raw())
            found.append((await cache.get("account", TAGS)).value)
            await cache.close()
            return found

        assert run(scenario) == [None] * 10 + [{"name": "real", "admin": False}]
        store.close()

    @pytest.mark.parametrize(
        "planted",
        [
            STORED + "\u00e9".encode() * 32 + b":1e10:{}",  # a non-ASCII signature
            STORED + b"a" * 64 + b":nan:" + b'"\\ud800"',  # no expiry, a lone surrogate
            STORED + b"a" * 64 + b":1e10:" + b"[" * 100_000,  # deeper than JSON goes
            b"7" * 5_000,  # more digits than Python turns into an int
            b"StreamingResponse:x",  # a type cashews decodes on its own
        ],
        ids=["non-ascii-signature", "surrogate", "deep", "digits", "cashews-type"],
    )
    @pytest.mark.parametrize("where", ["entry", "tag"])
    def test_anything_planted_is_a_miss_never_an_error_nor_an_outage(
        self, redis: RedisServer, planted: bytes, where: str
    ) -> None:
        store = redis_client.Redis.from_url(redis.url)

        async def scenario() -> tuple[Any, bool, Any]:
            cache = await started(make_cache(redis.url))
            await cache.put(await cache.get("account", TAGS), {"name": "real"}, ttl=60)
            (key,) = store.keys(f"cache:*:{where}:*")
            store.set(key, planted)
            if planted.startswith(b"StreamingResponse"):
                store.set(f"{key.decode() if isinstance(key, bytes) else key}:done", b"1")
            found = (await cache.get("account", TAGS)).value
            still_available = cache.available
            # The planted value was dropped: the key caches again at once.
            await cache.put(await cache.get("account", TAGS), {"name": "again"}, ttl=60)
            again = (await cache.get("account", TAGS)).value
            await cache.close()
            return found, still_available, again

        assert run(scenario) == (None, True, {"name": "again"})
        store.close()

    def test_an_old_entry_and_version_written_back_are_dead_once_expired(
        self, redis: RedisServer
    ) -> None:
        """A replay: the signed entry and tag version from before a revocation, copied back
        without a TTL. They are genuine, but carry their expiry: they die on time anyway."""
        store = redis_client.Redis.from_url(redis.url)

        async def scenario() -> tuple[Any, Any]:
            cache = await started(make_cache(redis.url))
            await cache.put(await cache.get("account", TAGS), {"name": "before"}, ttl=0.5)
            saved = {key: store.get(key) for key in store.keys("cache:*")}
            assert await cache.invalidate(TAGS)  # the revocation
            for key, value in saved.items():
                store.set(key, value or b"")  # written back at once: still within the TTL
            replayed_at_once = (await cache.get("account", TAGS)).value
            await asyncio.sleep(0.6)
            for key, value in saved.items():
                store.set(key, value or b"")  # and again, once the entry's TTL has run out
            replayed_late = (await cache.get("account", TAGS)).value
            await cache.close()
            return replayed_at_once, replayed_late

        at_once, late = run(scenario)
        # Within its TTL a replay is what the cache promises anyway (served at most TTL after
        # the write); past it, never.
        assert at_once == {"name": "before"}
        assert late is None
        store.close()

    def test_another_secret_key_reads_nothing_of_the_first_ones(self, redis: RedisServer) -> None:
        async def scenario() -> tuple[bool, bool, bool]:
            before = await started(make_cache(redis.url))
            rotated = await started(Cache(redis.url, secret="another-" + SECRET))
            await before.put(await before.get("account", TAGS), {"name": "old key"}, ttl=60)
            missed = not (await rotated.get("account", TAGS)).hit
            await rotated.put(await rotated.get("account", TAGS), {"name": "new key"}, ttl=60)
            served = (await rotated.get("account", TAGS)).value == {"name": "new key"}
            untouched = (await before.get("account", TAGS)).value == {"name": "old key"}
            await before.close()
            await rotated.close()
            return missed, served, untouched

        assert run(scenario) == (True, True, True)

    def test_an_unreachable_store_is_one_fast_miss_then_left_alone(
        self, redis: RedisServer
    ) -> None:
        async def scenario() -> tuple[float, float]:
            cache = await started(make_cache(redis.url, timeout=0.2, backoff=30))
            await cache.put(await cache.get("account", TAGS), {"name": "x"}, ttl=60)
            redis.stop()
            started_at = time.monotonic()
            assert not (await cache.get("account", TAGS)).hit
            first = time.monotonic() - started_at
            started_at = time.monotonic()
            for _ in range(50):
                assert not (await cache.get("account", TAGS)).hit
            rest = time.monotonic() - started_at
            await cache.close()
            return first, rest

        first, rest = run(scenario)
        assert first < 1.0
        # During the back-off nothing waits on Redis at all.
        assert rest < 0.2

    def test_revoke_waits_until_no_entry_can_be_served_when_the_store_is_down(
        self, redis: RedisServer
    ) -> None:
        async def scenario() -> float:
            cache = await started(make_cache(redis.url, timeout=0.1, revocable_ttl=0.5))
            redis.stop()
            started_at = time.monotonic()
            await cache.revoke(TAGS)
            waited = time.monotonic() - started_at
            await cache.close()
            return waited

        assert run(scenario) >= 0.5

    def test_caching_resumes_by_itself_when_the_store_returns(self, redis: RedisServer) -> None:
        async def scenario() -> bool:
            cache = await started(make_cache(redis.url, timeout=0.2, backoff=0.3))
            redis.stop()
            assert not (await cache.get("account", TAGS)).hit
            redis.start()
            await asyncio.sleep(0.4)
            await cache.put(await cache.get("account", TAGS), {"name": "back"}, ttl=60)
            hit = (await cache.get("account", TAGS)).hit
            await cache.close()
            return hit

        assert run(scenario)


class TestUnitsOfWork:
    """What a unit of work commits invalidates its tags before `Database.run` returns."""

    def _database(self, session_factory: Callable[[], Session], cache: Cache) -> Database:
        return Database(session_factory, max_threads=2, cache=cache)

    def _cached(self, cache: Cache) -> Awaitable[None]:
        async def store() -> None:
            await cache.put(await cache.get("k", TAGS), ["v"], ttl=60)

        return store()

    @pytest.mark.parametrize(
        ("outcome", "invalidated"),
        [
            ("commit", True),
            ("rollback", False),
            ("rollback then commit", False),
            ("commit then raise", True),
        ],
    )
    def test_only_committed_tags_are_invalidated(
        self,
        session_factory: Callable[[], Session],
        outcome: str,
        invalidated: bool,
    ) -> None:
        def work(session: Session) -> None:
            invalidate_on_commit(session, *TAGS)
            if outcome.startswith("rollback"):
                session.rollback()
                if outcome == "rollback":
                    return
            session.commit()
            if outcome == "commit then raise":
                raise LookupError("after the commit")

        async def scenario() -> bool:
            cache = await started(make_cache(""))
            database = self._database(session_factory, cache)
            await self._cached(cache)
            try:
                await database.run(work)
            except LookupError:
                assert outcome == "commit then raise"
            hit = (await cache.get("k", TAGS)).hit
            database.dispose()
            await cache.close()
            return hit

        assert run(scenario) is not invalidated

    def test_a_revoking_commit_waits_out_an_unreachable_store(
        self, session_factory: Callable[[], Session], redis: RedisServer
    ) -> None:
        def work(session: Session) -> None:
            revoke_on_commit(session, *TAGS)
            session.commit()

        async def scenario() -> float:
            cache = await started(make_cache(redis.url, timeout=0.1, revocable_ttl=0.5))
            database = self._database(session_factory, cache)
            redis.stop()
            started_at = time.monotonic()
            await database.run(work)
            waited = time.monotonic() - started_at
            database.dispose()
            await cache.close()
            return waited

        assert run(scenario) >= 0.5


class TestClaims:
    def test_a_claim_is_granted_once_per_period_across_processes(self, redis: RedisServer) -> None:
        async def scenario() -> list[bool]:
            first = await started(make_cache(redis.url))
            second = await started(make_cache(redis.url))
            answers = [
                await first.claim("chore", 0.5),
                await second.claim("chore", 0.5),
                await first.claim("chore", 0.5),
            ]
            await asyncio.sleep(0.6)
            answers.append(await second.claim("chore", 0.5))
            await first.close()
            await second.close()
            return answers

        assert run(scenario) == [True, False, False, True]

    def test_a_process_that_saw_a_claim_taken_does_not_ask_the_store_again(
        self, redis: RedisServer
    ) -> None:
        async def scenario() -> list[bool]:
            first = await started(make_cache(redis.url))
            second = await started(make_cache(redis.url))
            answers = [await first.claim("chore", 60), await second.claim("chore", 60)]
            redis.stop()  # whoever asks the store now finds it down and claims on its own
            answers += [await first.claim("chore", 60), await second.claim("chore", 60)]
            await first.close()
            await second.close()
            return answers

        assert run(scenario) == [True, False, False, False]
