"""add job queue

Revision ID: 42abc134136b
Revises: d5c74cf6d769
Create Date: 2026-12-01 15:39:42.561434

The durable job queue (core/jobs) is procrastinate's schema, in PostgreSQL only: on SQLite
jobs run in-process and need no table. The schema is the pinned version's, kept verbatim in
migrations/sql/ so this revision builds the same tables whatever procrastinate is installed
later. Its tables are not SQLModel models: migrations/env.py keeps them out of autogenerate.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op
from sqlalchemy.schema import DDL

from migrations.lint import squawk_ignore

revision: str = "42abc134136b"
down_revision: str | None = "d5c74cf6d769"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = Path(__file__).resolve().parent.parent / "sql" / "procrastinate_3.10.0_schema.sql"

# Everything the schema creates is named procrastinate_*: tables (their indexes and triggers
# go with them), then the functions, then the types.
DROP_SCHEMA = """
DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,
    procrastinate_workers CASCADE;
DO $$
DECLARE
    routine regprocedure;
BEGIN
    FOR routine IN
        SELECT oid::regprocedure FROM pg_proc
         WHERE proname LIKE 'procrastinate\\_%' AND pronamespace = current_schema()::regnamespace
    LOOP
        EXECUTE 'DROP FUNCTION ' || routine;
    END LOOP;
END;
$$;
DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type,
    procrastinate_job_status;
"""


def _ddl(sql: str) -> DDL:
    # DDL, not text(): its `:` are SQL (casts, `:=`), never bound parameters, and it renders
    # into `alembic upgrade --sql` too (the SQL squawk lints). DDL formats the text with `%`,
    # hence the doubling of the file's own.
    return DDL(sql.replace("%", "%%"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    squawk_ignore(
        "prefer-identity",
        reason="procrastinate's own schema, kept verbatim; its bigserial ids are its choice",
    )
    op.execute(_ddl(SCHEMA.read_text(encoding="utf-8")))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_ddl(DROP_SCHEMA))
