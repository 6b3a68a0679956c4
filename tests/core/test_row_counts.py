"""The counts the database keeps for paged lists stay equal to count(*), whatever writes rows."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, Table, create_engine, delete, func, insert, select, text
from sqlmodel import Session

from core.data.db import build_engine, metadata
from core.data.row_counts import COUNTED_TABLES, install_statements, row_count
from features.registry import import_models
from tests.conftest import alembic_config, make_settings
from tests.support import fresh_database, fresh_postgres_database, migrate, requires_postgres

import_models()
USERS: Table = metadata.tables["users"]
# The revision before the one that starts counting users.
BEFORE_ROW_COUNTS = "c813ff4460e5"


def user_rows(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "id": uuid.uuid4(),
            "name": "Counted",
            "email": f"counted-{uuid.uuid4().hex}@example.com",
            "hashed_password": "not-a-hash",
            "is_active": True,
            "is_superuser": False,
            "is_verified": False,
            "token_version": 0,
            "created_at": now,
            "updated_at": now,
        }
        for _ in range(count)
    ]


def kept_and_real(connection: Connection, table: str) -> tuple[int, int]:
    with Session(bind=connection) as session:
        kept = row_count(session, table)
    real = connection.execute(select(func.count()).select_from(metadata.tables[table])).scalar()
    return kept, int(real or 0)


def trigger_events(connection: Connection, table: str) -> set[str]:
    """The row-count triggers the database holds for `table`, by event."""
    if connection.dialect.name == "postgresql":
        query = text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:table AS regclass)"
            " AND NOT tgisinternal AND tgenabled = 'O'"
        )
    else:
        query = text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table")
    names = connection.execute(query, {"table": table}).scalars()
    prefix = f"{table}_row_count_"
    return {name.removeprefix(prefix) for name in names if name.startswith(prefix)}


@pytest.mark.parametrize("table", COUNTED_TABLES)
def test_every_counted_table_has_its_triggers_and_count(connection: Connection, table: str) -> None:
    """Fails when a migration rebuilt the table and its triggers went with it."""
    expected = {"insert", "delete"}
    if connection.dialect.name == "postgresql":
        expected.add("truncate")
    assert trigger_events(connection, table) == expected
    kept, real = kept_and_real(connection, table)
    assert kept == real


def test_inserts_and_deletes_move_the_count(connection: Connection) -> None:
    """Fails too when a migration rebuilt the table and its triggers are gone."""
    kept, start = kept_and_real(connection, "users")
    assert kept == start

    connection.execute(insert(USERS), user_rows(1))
    assert kept_and_real(connection, "users") == (start + 1, start + 1)

    batch = user_rows(5)
    connection.execute(insert(USERS), batch)  # one statement, five rows
    assert kept_and_real(connection, "users") == (start + 6, start + 6)

    three_ids = [row["id"] for row in batch[:3]]
    connection.execute(delete(USERS).where(USERS.c.id.in_(three_ids)))
    assert kept_and_real(connection, "users") == (start + 3, start + 3)

    # A statement that changes nothing leaves the count alone.
    connection.execute(delete(USERS).where(USERS.c.id == uuid.uuid4()))
    assert kept_and_real(connection, "users") == (start + 3, start + 3)


def test_a_rolled_back_write_leaves_the_count_as_it_was(connection: Connection) -> None:
    before = kept_and_real(connection, "users")
    savepoint = connection.begin_nested()
    connection.execute(insert(USERS), user_rows(4))
    assert kept_and_real(connection, "users") == (before[0] + 4, before[1] + 4)
    savepoint.rollback()
    assert kept_and_real(connection, "users") == before


@requires_postgres
def test_truncate_resets_the_count(connection: Connection) -> None:
    connection.execute(insert(USERS), user_rows(2))
    connection.execute(text("TRUNCATE users CASCADE"))
    assert kept_and_real(connection, "users") == (0, 0)


@requires_postgres
def test_counting_works_whatever_the_sessions_search_path(connection: Connection) -> None:
    # pg_dump's restore scripts run with an empty search_path.
    before = kept_and_real(connection, "users")
    connection.execute(text("SET LOCAL search_path = ''"))
    row = user_rows(1)[0]
    connection.execute(
        text(
            "INSERT INTO public.users (id, name, email, hashed_password, is_active,"
            " is_superuser, is_verified, token_version, created_at, updated_at) VALUES"
            " (:id, :name, :email, :hashed_password, :is_active, :is_superuser, :is_verified,"
            " :token_version, :created_at, :updated_at)"
        ),
        row,
    )
    connection.execute(text("SET LOCAL search_path TO DEFAULT"))
    assert kept_and_real(connection, "users") == (before[0] + 1, before[1] + 1)


def test_a_table_without_a_count_is_an_error_not_a_zero(connection: Connection) -> None:
    with Session(bind=connection) as session, pytest.raises(LookupError, match="refresh_tokens"):
        row_count(session, "refresh_tokens")


@pytest.mark.parametrize("name", ["users; DROP TABLE users", "Users", "", "x" * 64])
def test_only_plain_table_names_reach_the_sql(name: str) -> None:
    with pytest.raises(ValueError, match="plain table name"):
        install_statements(name, "postgresql")


# --- a database of its own: commits from many connections, and the upgrade itself -----------


@pytest.fixture
def own_database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@requires_postgres
def test_concurrent_writers_keep_the_count_exact(own_database: str) -> None:
    migrate(own_database)
    engine = create_engine(own_database, pool_size=8)
    writers, rounds = 8, 10
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                # Each round commits three new rows and removes one of them again.
                rows = user_rows(3)
                with engine.begin() as connection:
                    connection.execute(insert(USERS), rows)
                with engine.begin() as connection:
                    connection.execute(delete(USERS).where(USERS.c.id == rows[0]["id"]))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors, errors
        with engine.connect() as connection:
            assert kept_and_real(connection, "users") == (writers * rounds * 2,) * 2
    finally:
        engine.dispose()


def test_the_upgrade_counts_the_rows_already_there(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        engine = build_engine(url, make_settings(url))
        try:
            upgrade_with_users_already_there(engine)
        finally:
            engine.dispose()


def upgrade_with_users_already_there(engine: Engine) -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), BEFORE_ROW_COUNTS)
        connection.execute(insert(USERS), user_rows(7))
        command.upgrade(alembic_config(connection), "head")
        assert kept_and_real(connection, "users") == (7, 7)
        connection.execute(insert(USERS), user_rows(1))
        assert kept_and_real(connection, "users") == (8, 8)
