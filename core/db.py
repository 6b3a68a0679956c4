"""Engines, sessions and the one way route code reaches the database.

Route handlers are `async def`; they hand a whole unit of database work (a service call) to
`Database.run`, which runs it in a worker thread with its own session. A request therefore
holds at most one connection, only while its thread runs, and the number of such threads is
capped at the pool size: threads never wait on the pool and the pool never waits on threads,
so no level of concurrency can deadlock the two.
"""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, MetaData, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlmodel import Session, SQLModel, create_engine

from core import metrics
from core.config import Settings

P = ParamSpec("P")
T = TypeVar("T")

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
        connection.exec_driver_sql("BEGIN")


def build_engine(url: str, settings: Settings, *, autocommit: bool = False) -> Engine:
    """One engine per URL (and transaction mode), tuned for the backend it talks to.

    `autocommit` engines serve reads that need no transaction: no BEGIN and no ROLLBACK, so
    one round trip instead of three. They get a pool of their own, because switching a pooled
    connection between modes costs a round trip each way.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        isolation_level="AUTOCOMMIT" if autocommit else None,
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


SessionFactory = Callable[[], Session]


class SessionKind(Enum):
    WRITE = "write"  # a transaction on the primary
    READ = "read"  # no transaction, on the replica (the primary when none is configured)
    FRESH_READ = "fresh_read"  # no transaction, on the primary: sees every committed write


class Database:
    """Sessions for writes and for reads, and the bounded thread hop that uses them."""

    def __init__(
        self,
        write_session: SessionFactory,
        read_session: SessionFactory,
        max_threads: int,
        engines: tuple[Engine, ...] = (),
        work_timeout: float = 10.0,
        fresh_read_session: SessionFactory | None = None,
    ) -> None:
        self._work_timeout = work_timeout
        self._factories = {
            SessionKind.WRITE: write_session,
            SessionKind.READ: read_session,
            SessionKind.FRESH_READ: fresh_read_session or write_session,
        }
        self._engines = engines
        # The threads that do database work: never more than connections in a pool.
        # Observability (core/metrics.py): each unit keeps its request's trace context, and
        # its wait for a thread is measured.
        self._executor = metrics.ObservedThreadPoolExecutor(max_threads, thread_name_prefix="db")

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        write_engine = build_engine(settings.DATABASE_URL, settings)
        # SQLite transactions cost no round trip, so one engine serves everything there.
        fresh_read_engine = (
            write_engine
            if write_engine.dialect.name == "sqlite"
            else build_engine(settings.DATABASE_URL, settings, autocommit=True)
        )
        read_engine = (
            fresh_read_engine
            if settings.read_database_url == settings.DATABASE_URL
            else build_engine(settings.read_database_url, settings, autocommit=True)
        )
        engines = tuple({id(e): e for e in (write_engine, fresh_read_engine, read_engine)}.values())
        return cls(
            write_session=lambda: Session(write_engine, expire_on_commit=False),
            read_session=lambda: Session(read_engine, expire_on_commit=False),
            fresh_read_session=lambda: Session(fresh_read_engine, expire_on_commit=False),
            max_threads=settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW,
            engines=engines,
            work_timeout=settings.DATABASE_WORK_TIMEOUT,
        )

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine in use, once each (for metrics and tracing)."""
        return self._engines

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        kind = SessionKind.READ if read_only else SessionKind.WRITE
        with self._factories[kind]() as session:
            yield session

    async def run(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `work(session, ...)` in a worker thread; the work commits what it changes."""
        return await self._in_thread(work, SessionKind.WRITE, args, kwargs)

    async def run_read(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Read-only work outside a transaction, on the replica when DATABASE_READ_URL is set."""
        return await self._in_thread(work, SessionKind.READ, args, kwargs)

    async def run_fresh_read(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Read-only work outside a transaction on the primary, for checks that must see the
        latest commit (a token revoked a moment ago), which a lagging replica might not."""
        return await self._in_thread(work, SessionKind.FRESH_READ, args, kwargs)

    async def _in_thread(
        self,
        work: Callable[..., T],
        kind: SessionKind,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        # A plain executor future and a loop timer: the cheapest bounded hop asyncio offers
        # (an anyio cancel scope per request cost about 7% of the CPU of GET /users/me).
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._in_session, work, kind, args, kwargs)
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            # Cancels a call still queued; one already running finishes on its own and its
            # session closes then, while the request answers 503 now.
            future.cancel()

        timer = loop.call_later(self._work_timeout, expire)
        try:
            return await future
        except asyncio.CancelledError:
            if timed_out:
                raise sa_exc.TimeoutError("database work timed out") from None
            raise
        finally:
            timer.cancel()

    def _in_session(
        self,
        work: Callable[..., T],
        kind: SessionKind,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        with self._factories[kind]() as session:
            return work(session, *args, **kwargs)

    def dispose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for engine in self._engines:
            engine.dispose()
