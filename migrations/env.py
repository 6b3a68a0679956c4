"""Alembic environment: the app's settings give the URL, the feature registry gives the tables."""

import logging.config
from typing import Any

from alembic import context
from sqlalchemy import Connection, text

from core.config import get_settings
from core.db import build_engine, metadata
from features.registry import import_models

# Any number 0..2^63: the key several replicas take before migrating, so one applies the
# migrations while the others wait and then find nothing left to do.
MIGRATION_LOCK_KEY = 727_274_001

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

import_models()
target_metadata = metadata


# The job queue's tables (procrastinate's, created by their own migration) are no SQLModel
# model: autogenerate must neither drop them nor report them as drift.
FOREIGN_TABLE_PREFIXES = ("procrastinate_",)


def include_object(
    _object: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "table" and reflected and compare_to is None and name is not None:
        return not name.startswith(FOREIGN_TABLE_PREFIXES)
    return True


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def _migrate(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=get_settings().DATABASE_URL,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # Tests hand in their own connection; everyone else gets the configured database.
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    settings = get_settings()
    engine = build_engine(settings.DATABASE_URL, settings)
    try:
        with engine.connect() as new_connection:
            _migrate(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
