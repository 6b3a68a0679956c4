"""Engines, sessions and the one way route code reaches the database.

Route handlers are `async def`. A service function that needs the database is a plain function
taking a `Session` first, marked `@transaction` (runs on the primary) or `@read_only` (may run
on the read replica); a route calls it as `await service.fn(db, ...)`. The call hands the whole
unit of work to a database thread with a session of its own. A request therefore holds at most
one connection, only while its thread runs, and those threads are capped at the pool size:
threads never wait on the pool and the pool never waits on threads, so no level of concurrency
can deadlock the two. (The tutorial pattern, a sync session dependency plus a sync route, holds
a connection in one thread while it waits for another, and deadlocks from about 40 concurrent
requests per worker: `make bench` shows it.)

Password hashing never runs inside a unit of work: the async use cases in a service hash first,
on the hasher's own threads, then hand the result to a unit of work, so no request holds a
connection while bcrypt runs.
"""

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar

from pydantic import BaseModel
from sqlalchemy import (
    CursorResult,
    Engine,
    Executable,
    Index,
    MetaData,
    Select,
    UniqueConstraint,
    bindparam,
    event,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlmodel import Session, SQLModel, create_engine

from core.cache import Cache
from core.concurrency import place_handed_on
from core.config import Settings
from core.data.invalidation import apply_invalidation, committed_invalidation
from core.errors import error_for_constraint
from core.observability import metrics

logger = logging.getLogger("app.db")

P = ParamSpec("P")
T = TypeVar("T")
SchemaT = TypeVar("SchemaT", bound=BaseModel)
SelectT = TypeVar("SelectT", bound=Select[Any])

# Stable constraint names, so migrations can drop or alter them by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


def _configure_sqlite(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, manage transactions (so SAVEPOINT works) and enforce FKs."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # `serialized` asks for the database's write lock from the first statement on.
        immediate = connection.get_execution_options().get(_SQLITE_WRITE_LOCK, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_SQLITE_WRITE_LOCK = "app_sqlite_write_lock"


def serialized(session: Session, name: str) -> None:
    """From here until its transaction ends, this session's transaction is the only one
    holding the lock `name`: the others wait for it. For a rule that spans rows and must hold
    however many requests race (one admin always remains): take the lock, change, then check
    the rule against what is committed, in the same transaction.

    PostgreSQL: a transaction-level advisory lock, released by the commit or rollback. SQLite:
    the database's write lock, taken by the transaction's BEGIN; so there it must be the
    first thing the session does (SQLite cannot take the lock once a transaction has read),
    and SQLAlchemy refuses it later rather than let it silently do nothing.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))
    elif not session.in_transaction():
        session.connection(execution_options={_SQLITE_WRITE_LOCK: True})
    elif not session.connection().get_execution_options().get(_SQLITE_WRITE_LOCK):
        raise RuntimeError(f"serialized({name!r}) must come first in its transaction on SQLite")


# How a read holds the rows it finds until its transaction ends, so that a request deleting
# one meanwhile waits for it instead of making its write fail:
# - "change": the row is about to be updated (SELECT ... FOR UPDATE);
# - "reference": a row pointing at it is about to be inserted (FOR KEY SHARE, which only a
#   delete, or a change of its key, waits for; concurrent updates go on).
RowLock = Literal["change", "reference"]


def locking(session: Session, statement: SelectT, lock: RowLock) -> SelectT:
    """`statement` taking `lock` on the rows it reads, read afresh (not from what the session
    already holds, which may be older).

    SQLite has no row locks: there, when this is the transaction's first statement, the
    transaction takes the database's write lock from its start (as `serialized` does), so
    the write that follows cannot fail on a snapshot that another commit made stale."""
    if session.get_bind().dialect.name == "sqlite" and not session.in_transaction():
        session.connection(execution_options={_SQLITE_WRITE_LOCK: True})
    if lock == "change":
        statement = statement.with_for_update()
    else:
        statement = statement.with_for_update(read=True, key_share=True)
    return statement.execution_options(populate_existing=True)


def build_engine(url: str, settings: Settings) -> Engine:
    """One engine, and so one pool, per database URL, tuned for the backend it talks to."""
    # A statement's parameters are personal data (addresses, names): in production, errors
    # and their log lines show the statement without them.
    hide_parameters = settings.ENVIRONMENT == "production"
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, hide_parameters=hide_parameters
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        hide_parameters=hide_parameters,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        # Pinging on every checkout costs a round trip per request. Without it, a database
        # restart costs one failed request (503) per worker: the first disconnect error
        # invalidates the whole pool and the next request reconnects. DATABASE_PRE_PING=true
        # trades that round trip for never handing out a dead connection.
        pool_pre_ping=settings.DATABASE_PRE_PING,
        # Connections older than this are replaced, before a firewall or proxy drops them.
        pool_recycle=settings.DATABASE_POOL_RECYCLE,
        connect_args={
            "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT,
            # A peer that vanished (failover, partition) is noticed by the kernel in seconds,
            # so its connection is dropped instead of blocking a thread for hours.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 15_000,
        },
    )


# SQLite names the columns of a violated unique constraint, not the constraint itself.
_SQLITE_UNIQUE_FAILED = re.compile(r"UNIQUE constraint failed: (.+)$")


def violated_constraint(error: sa_exc.IntegrityError) -> str | None:
    """The name of the constraint an IntegrityError violated, as the naming convention gives
    it, on PostgreSQL and SQLite; None when the driver does not say."""
    diagnostics = getattr(error.orig, "diag", None)  # psycopg2
    if diagnostics is not None:
        name: str | None = diagnostics.constraint_name
        return name
    found = _SQLITE_UNIQUE_FAILED.search(str(error.orig))
    if found is None:
        return None
    qualified = [column.strip().split(".", 1) for column in found.group(1).split(",")]
    table = metadata.tables.get(qualified[0][0])
    if table is None:
        return None
    columns = [column for _table, column in qualified]
    uniques: list[UniqueConstraint | Index] = [
        *(c for c in table.constraints if isinstance(c, UniqueConstraint)),
        *(index for index in table.indexes if index.unique),
    ]
    for constraint in uniques:
        if [column.name for column in constraint.columns] == columns:
            if isinstance(constraint.name, str):
                return constraint.name
            # `unique=True` on a column: named by the convention only when DDL is emitted.
            return NAMING_CONVENTION["uq"] % {"table_name": table.name, "column_0_name": columns[0]}
    return None


def as_domain_error(error: Exception) -> Exception:
    """A violation of a constraint some error class claims (`AppError.constraint`) becomes
    that error; anything else is returned unchanged."""
    if isinstance(error, sa_exc.IntegrityError):
        claimed = error_for_constraint(violated_constraint(error))
        if claimed is not None:
            domain_error = claimed()
            domain_error.__cause__ = error
            return domain_error
    return error


SessionFactory = Callable[[], Session]

_primary_reads: ContextVar[bool] = ContextVar("primary_reads", default=False)


@contextmanager
def reads_from_primary() -> Iterator[None]:
    """`@read_only` work in this block reads the primary, not the replica: for reads whose
    result is about to be cached as current (core/http/caching.py)."""
    token = _primary_reads.set(True)
    try:
        yield
    finally:
        _primary_reads.reset(token)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a unit of work did, carried back from its thread."""

    result: Any
    error: Exception | None
    # The cache invalidation its commits asked for, already running on the event loop.
    invalidating: concurrent.futures.Future[None] | None


class Database:
    """Sessions on the primary and on the read replica, and the bounded thread hop that runs
    a unit of work in one of them. With a cache, what a unit of work commits invalidates the
    cache tags it named before the call returns (core/cache.py)."""

    def __init__(
        self,
        session: SessionFactory,
        read_only_session: SessionFactory | None = None,
        *,
        max_threads: int,
        engines: tuple[Engine, ...] = (),
        work_timeout: float = 10.0,
        cache: Cache | None = None,
    ) -> None:
        self._session = session
        self._read_only_session = read_only_session or session
        self._engines = engines
        self._work_timeout = work_timeout
        self._cache = cache
        # The threads that do database work: never more than connections in a pool.
        # Observability (core/observability/metrics.py): each unit keeps its request's trace
        # context, and its wait for a thread is measured.
        self._executor = metrics.ObservedThreadPoolExecutor(max_threads, thread_name_prefix="db")

    @classmethod
    def from_settings(cls, settings: Settings, cache: Cache | None = None) -> "Database":
        primary = build_engine(settings.DATABASE_URL, settings)
        replica = (
            build_engine(settings.DATABASE_READ_URL, settings)
            if settings.DATABASE_READ_URL and settings.DATABASE_READ_URL != settings.DATABASE_URL
            else primary
        )
        return cls(
            lambda: Session(primary, expire_on_commit=False),
            lambda: Session(replica, expire_on_commit=False),
            max_threads=settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW,
            engines=(primary,) if replica is primary else (primary, replica),
            work_timeout=settings.DATABASE_WORK_TIMEOUT,
            cache=cache,
        )

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine in use, once each (for metrics and tracing)."""
        return self._engines

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session in the calling thread, for commands, jobs and tests (routes use `run`).
        It moves no cache tags: what its commits invalidate expires within its TTL."""
        with (self._read_only_session if read_only else self._session)() as session:
            yield session
            left = committed_invalidation(session)
            if left is not None and left.revoked:
                logger.warning(
                    "a write outside a unit of work revoked %s: cached accounts stay valid "
                    "up to their TTL (CACHE_USER_TTL_SECONDS); run it through Database.run",
                    ", ".join(sorted(left.revoked)),
                )

    async def run(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(session, ...)` on a database thread, in a session on the primary."""
        return await self._in_thread(self._session, work, args, kwargs)

    async def run_read_only(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(session, ...)` on a database thread, on the replica when DATABASE_READ_URL
        names one: it may lag the primary by a moment (not while `reads_from_primary`)."""
        session = self._session if _primary_reads.get() else self._read_only_session
        return await self._in_thread(session, work, args, kwargs)

    async def _in_thread(
        self,
        new_session: SessionFactory,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._work_timeout):
                outcome: _Outcome = await loop.run_in_executor(
                    self._executor, self._in_session, loop, new_session, work, args, kwargs
                )
        except TimeoutError:
            # A call still queued is cancelled; one already running finishes on its own and
            # its session closes then, while the request answers 503 now.
            raise sa_exc.TimeoutError("database work timed out") from None
        if outcome.invalidating is not None:
            # Before the response: once it is sent, no worker serves what the write changed.
            # Not cancelled with the request: an invalidation owed after a commit still runs.
            invalidating = asyncio.wrap_future(outcome.invalidating)
            quick = self._cache.timeout if self._cache is not None else None
            done, _ = await asyncio.wait({invalidating}, timeout=quick)
            if not done:
                # Redis is slow or gone, and a revocation then waits out the cache's TTL: the
                # request's place among those in progress goes to the next one meanwhile.
                async with place_handed_on():
                    await asyncio.shield(invalidating)
        if outcome.error is not None:
            raise outcome.error
        result: T = outcome.result
        return result

    def _in_session(
        self,
        loop: asyncio.AbstractEventLoop,
        new_session: SessionFactory,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> _Outcome:
        result: Any = None
        error: Exception | None = None
        with new_session() as session:
            try:
                result = work(session, *args, **kwargs)
            except Exception as raised:  # carried back and raised again in the request
                # A unique address taken a moment ago is a 409 wherever its write was flushed:
                # at the commit, or before it by a hook reaction's own query (autoflush).
                error = as_domain_error(raised)
            invalidation = committed_invalidation(session)
        invalidating = None
        if invalidation is not None and self._cache is not None:
            # Started here, on the loop, so it runs even if the request stopped waiting for
            # this thread (the work timeout).
            invalidating = asyncio.run_coroutine_threadsafe(
                apply_invalidation(self._cache, invalidation), loop
            )
        return _Outcome(result, error, invalidating)

    def dispose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for engine in self._engines:
            engine.dispose()


class UnitOfWork(Generic[P, T]):
    """A service function that runs in a session of its own: `await fn(db, ...)` from a route.

    `fn.in_session(session, ...)` runs the same function inside another unit of work, in that
    unit's session and transaction.
    """

    def __init__(self, function: Callable[Concatenate[Session, P], T], *, read_only: bool):
        self.in_session = function
        self.read_only = read_only
        functools.update_wrapper(self, function)

    async def __call__(self, db: Database, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.read_only:
            return await db.run_read_only(self.in_session, *args, **kwargs)
        return await db.run(self.in_session, *args, **kwargs)


def transaction(function: Callable[Concatenate[Session, P], T]) -> UnitOfWork[P, T]:
    """Marks a service function that runs on the primary; it commits what it changes, once.
    Reads that must see the latest commit (is this token revoked?) are marked so too."""
    return UnitOfWork(function, read_only=False)


def read_only(function: Callable[Concatenate[Session, P], T]) -> UnitOfWork[P, T]:
    """Marks a service function that only reads and may be served by the replica."""
    return UnitOfWork(function, read_only=True)


def changed_rows(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE in the session's transaction and say how many rows it changed.

    Two requests racing to spend one token both try a conditional UPDATE; the count says which
    one won, because the database serializes the two writes to the row.
    """
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # what UPDATE and DELETE always return
    return result.rowcount


@functools.cache
def _row_by_key(model: type[SQLModel], schema: type[BaseModel]) -> Select[Any]:
    # Built once per model and schema: a statement built per call costs its construction and
    # its cache key.
    table = model.__table__  # type: ignore[attr-defined]
    (key,) = table.primary_key.columns
    columns = [column for column in table.columns if column.name in schema.model_fields]
    return select(*columns).where(key == bindparam("key"))


def get_as(
    session: Session, model: type[SQLModel], key: Any, schema: type[SchemaT]
) -> SchemaT | None:
    """One row of `model` by primary key, read straight into `schema` (any schema made of
    some of the table's columns), or None.

    For reads on a hot path that change nothing: it selects only the schema's columns and
    skips the identity map and the ORM's instance bookkeeping, which cost a third of the CPU
    of `session.get()` for the user lookup that runs on every authenticated request.
    """
    row = session.execute(_row_by_key(model, schema), {"key": key}).mappings().first()
    return None if row is None else schema.model_validate(row)
