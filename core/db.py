"""Engines, sessions and the one way route code reaches the database.

Route handlers are `async def`; they hand a whole unit of database work (a service call) to
`Database.run`, which runs it in a worker thread with its own session. A request therefore
holds at most one connection, only while its thread runs, and the number of such threads is
capped at the pool size: threads never wait on the pool and the pool never waits on threads,
so no level of concurrency can deadlock the two.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
from sqlalchemy import Engine, MetaData, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlmodel import Session, SQLModel, create_engine

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


def build_engine(url: str, settings: Settings) -> Engine:
    """One engine per URL, tuned for the backend it talks to."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        # A connection that died while idle (database restart) is replaced, not handed out.
        pool_pre_ping=True,
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


class Database:
    """Sessions for writes and for reads, and the bounded thread hop that uses them."""

    def __init__(
        self,
        write_session: SessionFactory,
        read_session: SessionFactory,
        max_threads: int,
        engines: tuple[Engine, ...] = (),
        work_timeout: float | None = None,
    ) -> None:
        self._work_timeout = work_timeout
        self._write_session = write_session
        self._read_session = read_session
        self._engines = engines
        self._limiter = anyio.CapacityLimiter(max_threads)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        write_engine = build_engine(settings.DATABASE_URL, settings)
        read_engine = (
            write_engine
            if settings.read_database_url == settings.DATABASE_URL
            else build_engine(settings.read_database_url, settings)
        )
        engines = tuple({id(e): e for e in (write_engine, read_engine)}.values())
        return cls(
            write_session=lambda: Session(write_engine, expire_on_commit=False),
            read_session=lambda: Session(read_engine, expire_on_commit=False),
            max_threads=settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW,
            engines=engines,
            work_timeout=settings.DATABASE_WORK_TIMEOUT,
        )

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        factory = self._read_session if read_only else self._write_session
        with factory() as session:
            yield session

    async def run(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `work(session, ...)` in a worker thread; the work commits what it changes."""
        return await self._in_thread(work, False, args, kwargs)

    async def run_read(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like `run`, on the read session (a replica when DATABASE_READ_URL is set)."""
        return await self._in_thread(work, True, args, kwargs)

    async def _in_thread(
        self,
        work: Callable[..., T],
        read_only: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        try:
            with anyio.fail_after(self._work_timeout):
                # abandon_on_cancel: at the deadline the request answers 503 at once; the
                # thread finishes (or fails) on its own and its session closes then.
                return await anyio.to_thread.run_sync(
                    self._in_session,
                    work,
                    read_only,
                    args,
                    kwargs,
                    limiter=self._limiter,
                    abandon_on_cancel=True,
                )
        except TimeoutError as error:
            raise sa_exc.TimeoutError("database work timed out") from error

    def _in_session(
        self,
        work: Callable[..., T],
        read_only: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        with self.session(read_only=read_only) as session:
            return work(session, *args, **kwargs)

    def dispose(self) -> None:
        for engine in self._engines:
            engine.dispose()
