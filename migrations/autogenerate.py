"""What `make migration` adds to Alembic's autogenerate, so a migration it writes does not fail
on a table that already has rows.

A NOT NULL column added to an existing table needs a value for the rows already there, and
only a server default gives one: PostgreSQL refuses the column otherwise (`NotNullViolation`),
SQLite too (`Cannot add a NOT NULL column with default value NULL`). The model's Python
default lives in the app, not in the database, so autogenerate alone writes no server default.
`server_defaults()` writes one from a plain default (`archived: bool = False`), and refuses,
saying what to write instead, when there is none it can derive (`default_factory=uuid4`).
The server default stays on the column afterwards: pods still running the previous release
insert rows without the new column during a rolling update, and the database fills it in.

A column that was nullable and becomes NOT NULL is refused too: its rows may hold NULLs, which
a data migration must fill first (docs/schema-changes.md). And a column the model
has retired (`RETIRED_COLUMNS`) stays in the table, unreported, until a later release drops it.
"""

import enum
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from alembic.autogenerate.api import AutogenContext
from alembic.migration import MigrationContext
from alembic.operations import ops
from alembic.util import CommandError
from sqlalchemy.sql.elements import False_, True_

# The job queue's tables (procrastinate's, created by their own migration) are no SQLModel
# model: autogenerate must neither drop them nor report them as drift.
FOREIGN_TABLE_PREFIXES = ("procrastinate_",)
# A model lists here the columns its code no longer maps but the database keeps for pods of the
# previous release, until a later migration drops them (docs/schema-changes.md):
#     __table_args__ = {"info": {RETIRED_COLUMNS: ("title",)}}
RETIRED_COLUMNS = "retired_columns"

# Defaults the database can hold as a constant of the column's type.
SCALAR_DEFAULTS = (bool, int, float, Decimal, str, enum.Enum)


def include_in_autogenerate(
    metadata: sa.MetaData,
    object_: Any,
    name: str | None,
    type_: str,
    reflected: bool,
    compare_to: Any,
) -> bool:
    """`include_object`: what autogenerate compares. Only in the database: the job queue's
    tables and the retired columns, neither dropped nor reported as drift."""
    if not reflected or compare_to is not None or name is None:
        return True
    if type_ == "table":
        return not name.startswith(FOREIGN_TABLE_PREFIXES)
    if type_ == "column":
        model = metadata.tables.get(object_.table.name)
        return model is None or name not in model.info.get(RETIRED_COLUMNS, ())
    return True


def server_defaults(context: MigrationContext, _revision: Any, directives: list[Any]) -> None:
    """`process_revision_directives`: a server default for every NOT NULL column added to an
    existing table; a CommandError (exit 1, nothing written) when none can be derived."""
    script: ops.MigrationScript = directives[0]
    problems: list[str] = []
    for container in script.upgrade_ops_list:
        for operation in _walk(container):
            if isinstance(operation, ops.AddColumnOp):
                problem = _give_server_default(operation, context.dialect)
            elif isinstance(operation, ops.AlterColumnOp):
                problem = _refuse_not_null_on_existing_rows(operation)
            else:
                continue
            if problem:
                problems.append(problem)
    if problems:
        raise CommandError("\n\n".join(["no migration written:", *problems]))


def _walk(container: ops.OpContainer) -> Iterator[ops.MigrateOperation]:
    for operation in container.ops:
        if isinstance(operation, ops.OpContainer):  # a table's ops (batch mode on SQLite)
            yield from _walk(operation)
        else:
            yield operation


def _give_server_default(operation: ops.AddColumnOp, dialect: sa.Dialect) -> str | None:
    column = operation.column
    if column.nullable or column.server_default is not None:
        return None
    where = f"{operation.table_name}.{column.name}"
    default = column.default
    value = default.arg if isinstance(default, sa.ColumnDefault) and default.is_scalar else None
    if not isinstance(value, SCALAR_DEFAULTS):
        found = "no default" if default is None else f"the default {_describe(default)}"
        return (
            f"{where} is added NOT NULL to a table that may have rows, with {found}: the "
            "database has nothing to fill those rows with, and the migration would fail on "
            "them. In the model, either\n"
            '  - give it a constant default (`Field(default=False)`, `= 0`, `= "draft"`), or\n'
            "  - give the database one: `Field(default_factory=utc_now, sa_column_kwargs="
            '{"server_default": sa.func.now()})`, or\n'
            "  - make it nullable (`... | None = None`), fill it in a data migration, and make "
            "it NOT NULL in a later release (docs/schema-changes.md).\n"
            "Then run `make migration` again."
        )
    # A copy: the column belongs to the app's metadata, which must stay as the models say.
    with_default = column._copy()
    with_default.server_default = sa.DefaultClause(_sql_constant(value, column.type, dialect))
    operation.column = with_default
    return None


def _sql_constant(value: Any, type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> str:
    """The default as the string of a quoted SQL constant (`DEFAULT '3'`), which PostgreSQL
    casts to the column's type and SQLite stores with the column's affinity. A constant, not
    an expression: SQLite then adds the column in place instead of copying the table (a copy
    would also drop its triggers, row_counts' among them)."""
    if isinstance(value, bool):
        return "1" if value else "0"  # boolean input on PostgreSQL, 1 / 0 on SQLite
    # Rendered by the column's own type (an enum member becomes the string it stores).
    literal = str(
        sa.literal(value, type_=type_).compile(
            dialect=dialect, compile_kwargs={"literal_binds": True}
        )
    )
    if literal.startswith("'") and literal.endswith("'"):
        return literal[1:-1].replace("''", "'")
    return literal


def _describe(default: Any) -> str:
    arg = getattr(default, "arg", default)
    name = getattr(arg, "__name__", None)  # SQLAlchemy's wrapper keeps the callable's name
    if name == "<lambda>":
        return "computed in Python"
    return f"`{name}` (computed in Python)" if name else f"{arg!r}"


def _refuse_not_null_on_existing_rows(operation: ops.AlterColumnOp) -> str | None:
    if operation.modify_nullable is not False or operation.existing_nullable is not True:
        return None
    where = f"{operation.table_name}.{operation.column_name}"
    return (
        f"{where} was nullable and becomes NOT NULL: rows holding NULL would make the "
        "migration fail. Keep it nullable in the model for now; fill the NULLs with a data "
        'migration (`alembic revision -m "fill ..."`, an UPDATE in its upgrade()); once '
        "that release is out, write the NOT NULL change by hand in a migration of its own "
        "(docs/schema-changes.md)."
    )


def render_item(type_: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    """Write a server default as the model says it, not as the SQL of the database that
    happened to generate the migration: `sa.false()` rather than `0` (SQLite's; PostgreSQL
    refuses an integer for a boolean), `sa.text("CURRENT_TIMESTAMP")` rather than SQLite's
    `(CURRENT_TIMESTAMP)`."""
    if type_ != "server_default" or not isinstance(obj, sa.DefaultClause):
        return False
    if isinstance(obj.arg, True_):
        return "sa.true()"
    if isinstance(obj.arg, False_):
        return "sa.false()"
    if isinstance(obj.arg, sa.TextClause):
        return f"sa.text({obj.arg.text!r})"
    return False
