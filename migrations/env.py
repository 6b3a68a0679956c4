"""Alembic environment: the app's settings give the URL, the feature registry gives the tables."""

import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import context
from sqlalchemy import Connection, text

from core.config import get_settings
from core.data.db import build_engine, metadata
from features.registry import import_models
from migrations.autogenerate import include_in_autogenerate, render_item, server_defaults

# Any number 0..2^63: the key several replicas take before migrating, so one applies the
# migrations while the others wait and then find nothing left to do.
MIGRATION_LOCK_KEY = 727_274_001
# On PostgreSQL, a migration gives up (and the migrate step fails, to be retried) rather than
# wait longer than this for a table's lock: while an ALTER waits behind a long query, every
# request that touches the table queues behind the ALTER. A data migration whose statements
# need longer raises the limit for itself: op.execute("SET LOCAL statement_timeout = '30min'").
LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "5min"
TIMEOUTS = (
    f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'",
    f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'",
)

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

import_models()
target_metadata = metadata


def include_object(
    object_: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return include_in_autogenerate(target_metadata, object_, name, type_, reflected, compare_to)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # A NOT NULL column added to a table with rows gets a server default, or no migration.
        process_revision_directives=server_defaults,
        render_item=render_item,
    )


def _migrate(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            # After the lock: waiting for another replica's migrations is no table lock.
            for statement in TIMEOUTS:
                connection.execute(text(statement))
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            _check_foreign_keys(connection)


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite's way to rebuild a table (batch mode) with rows pointing at it: with foreign
    keys on, dropping the old copy of `users` deletes, by ON DELETE CASCADE, every session
    and token of every user. The pragma takes effect only outside a transaction, so on the
    driver's connection, before SQLAlchemy begins one; _check_foreign_keys() then checks what
    the pragma did not."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver_connection.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        tables = sorted({row[0] for row in broken})
        raise RuntimeError(f"the migrations left rows pointing at nothing in {tables}")


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: the SQL, printed. `python -m migrations.lint` asks for
    PostgreSQL's (attributes["url"]), whatever DATABASE_URL says."""
    url = config.attributes.get("url") or get_settings().DATABASE_URL
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        if context.get_context().dialect.name == "postgresql":
            for statement in TIMEOUTS:
                context.execute(statement)
        context.run_migrations()


def run_migrations_online() -> None:
    # Tests hand in their own connection or URL; everyone else gets the configured database.
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    settings = get_settings()
    engine = build_engine(config.attributes.get("url") or settings.DATABASE_URL, settings)
    try:
        with engine.connect() as new_connection, _sqlite_foreign_keys_off(new_connection):
            _migrate(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
