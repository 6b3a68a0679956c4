"""Exact row counts for paged lists: one primary-key read instead of a scan.

PostgreSQL keeps no row count, so `count(*)` reads the whole table: a paged list that shows
its total pays a scan on every page (0.8 ms of database CPU at 10,000 users, growing with the
table). A table that opts in gets triggers, installed by its migration with the statements
below, that add and subtract in `row_counts` inside the transaction of every insert and delete.
The figure is therefore exact, rolls back with its transaction, and is the same for every
worker and instance, whatever wrote the rows (the app, manage.py, psql).

The price: a write that adds or removes rows holds the table's counter row until it commits,
so such writes to one counted table commit one at a time. Sign-ups, paced by bcrypt, never
notice; do not opt in a table that takes thousands of inserts a second. Writers at REPEATABLE
READ or SERIALIZABLE (the app uses neither) get serialization failures instead of waiting.

What bypasses triggers bypasses the count: on PostgreSQL, `session_replication_role =
replica` (logical replication subscribers, `pg_restore --disable-triggers`); on SQLite,
`INSERT OR REPLACE` without `PRAGMA recursive_triggers`. After such a load, recount:
`UPDATE row_counts SET total = (SELECT count(*) FROM users) WHERE table_name = 'users'`.

On SQLite, a migration that rebuilds a counted table (alembic batch mode does that for most
column changes) drops its triggers: install them again in that migration.
`tests/core/test_row_counts.py` fails when a counted table's triggers are missing.

Migrations run these statements as they are when the migration runs: to change them, add new
ones for a new migration to use rather than editing what earlier migrations call.
"""

import re
from typing import Any

from sqlalchemy import BigInteger, Label, Select, bindparam, select
from sqlmodel import Field, Session, SQLModel

# Every table whose count the database keeps; the tests check each one.
COUNTED_TABLES = ("users",)


class RowCount(SQLModel, table=True):
    __tablename__ = "row_counts"
    table_name: str = Field(primary_key=True, max_length=63)
    total: int = Field(sa_type=BigInteger)


def _total_of(table_name: Any) -> Select[int]:
    """The counter's read, for a table name or a bound parameter standing for one."""
    statement: Select[int] = select(RowCount.total).where(  # type: ignore[call-overload]
        RowCount.table_name == table_name
    )
    return statement


_TOTAL = _total_of(bindparam("table_name"))
TOTAL_LABEL = "total_rows"


def row_count(session: Session, table_name: str) -> int:
    # On the session's connection: the ORM's execution path costs more than this read.
    result = session.connection().execute(_TOTAL, {"table_name": table_name})
    total: int | None = result.scalar()
    if total is None:
        raise LookupError(f"no row count is kept for {table_name!r}: see core/data/row_counts.py")
    return total


def row_count_column(table_name: str) -> Label[int]:
    """The kept count as a column (`total_rows`), to select with a page of the table's rows:
    the page and its total then come in one round trip and from one snapshot."""
    return _total_of(table_name).scalar_subquery().label(TOTAL_LABEL)


# --- migration statements ----------------------------------------------------------------------
# PostgreSQL counts per statement, through the rows it changed (transition tables), so a bulk
# insert or delete updates the counter once. TRUNCATE fires no row triggers; it has its own.
# SET search_path FROM CURRENT pins the schema the functions were created in, so a session with
# another search_path (pg_dump's restore scripts empty it) still finds row_counts.

_POSTGRESQL_FUNCTIONS = (
    """
    CREATE OR REPLACE FUNCTION row_counts_add() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    DECLARE changed bigint := (SELECT count(*) FROM changed_rows);
    BEGIN
        IF changed > 0 THEN
            UPDATE row_counts SET total = total + changed WHERE table_name = TG_TABLE_NAME;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION row_counts_subtract() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    DECLARE changed bigint := (SELECT count(*) FROM changed_rows);
    BEGIN
        IF changed > 0 THEN
            UPDATE row_counts SET total = total - changed WHERE table_name = TG_TABLE_NAME;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION row_counts_reset() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        UPDATE row_counts SET total = 0 WHERE table_name = TG_TABLE_NAME;
        RETURN NULL;
    END $$
    """,
)


def _checked(table: str) -> str:
    # Table names go into the SQL text (DDL takes no parameters): plain identifiers only, short
    # enough for the trigger names built from them to fit PostgreSQL's 63 characters.
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", table):
        raise ValueError(f"not a plain table name: {table!r}")
    return table


def install_statements(table: str, dialect: str) -> list[str]:
    """SQL that starts counting `table`: its current count, then triggers that keep it."""
    table = _checked(table)
    seed = f"INSERT INTO row_counts (table_name, total) SELECT '{table}', count(*) FROM {table}"  # noqa: S608
    if dialect == "postgresql":
        return [
            *_POSTGRESQL_FUNCTIONS,
            f"CREATE TRIGGER {table}_row_count_insert AFTER INSERT ON {table}"
            " REFERENCING NEW TABLE AS changed_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION row_counts_add()",
            f"CREATE TRIGGER {table}_row_count_delete AFTER DELETE ON {table}"
            " REFERENCING OLD TABLE AS changed_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION row_counts_subtract()",
            f"CREATE TRIGGER {table}_row_count_truncate AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION row_counts_reset()",
            seed,
        ]
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_row_count_insert AFTER INSERT ON {table} BEGIN"  # noqa: S608
            f" UPDATE row_counts SET total = total + 1 WHERE table_name = '{table}'; END",
            f"CREATE TRIGGER {table}_row_count_delete AFTER DELETE ON {table} BEGIN"  # noqa: S608
            f" UPDATE row_counts SET total = total - 1 WHERE table_name = '{table}'; END",
            seed,
        ]
    raise NotImplementedError(f"row counts are not written for {dialect}")


def uninstall_statements(table: str, dialect: str) -> list[str]:
    """SQL that stops counting `table` (the functions stay: other tables may use them)."""
    table = _checked(table)
    triggers = ["insert", "delete", "truncate"] if dialect == "postgresql" else ["insert", "delete"]
    on_table = f" ON {table}" if dialect == "postgresql" else ""
    return [
        *(f"DROP TRIGGER IF EXISTS {table}_row_count_{event}{on_table}" for event in triggers),
        f"DELETE FROM row_counts WHERE table_name = '{table}'",  # noqa: S608
    ]


def drop_function_statements(dialect: str) -> list[str]:
    if dialect != "postgresql":
        return []
    return [
        f"DROP FUNCTION IF EXISTS {name}()"
        for name in ("row_counts_add", "row_counts_subtract", "row_counts_reset")
    ]
