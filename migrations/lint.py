"""squawk, the PostgreSQL migration linter, over the SQL of every migration.

    python -m migrations.lint        # part of `make lint`, and so of CI

Each migration's upgrade is rendered as PostgreSQL's SQL (`alembic upgrade <previous>:<rev>
--sql`, whatever DATABASE_URL says: nothing connects) and squawk reads it with the settings in
.squawk.toml. A statement that would lock a table with rows for long, rewrite it, or break the
pods still running the previous release fails, with squawk's explanation and its fix.

A migration that must do such a thing anyway says so, with its reason, next to the statement:

    squawk_ignore("ban-drop-column", reason="contract step: no release reads it since 1.4")

which writes squawk's own `-- squawk-ignore-file` comment into that migration's SQL.
"""

import io
import re
import subprocess
import sys
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parent.parent
# Nothing connects: the URL only chooses the dialect the SQL is written in.
POSTGRESQL_URL = "postgresql+psycopg2://offline/migrations"
RULE_NAME = re.compile(r"[a-z]+(-[a-z]+)+")


def squawk_ignore(*rules: str, reason: str) -> None:
    """Waive squawk's `rules` for this migration, for `reason` (required: it is the review).
    Only `alembic upgrade --sql` shows it; migrating a database it changes nothing."""
    if not rules or not all(RULE_NAME.fullmatch(rule) for rule in rules):
        raise ValueError(f"squawk rule names, like ban-drop-column: {rules!r}")
    if not reason.strip() or "\n" in reason:
        raise ValueError("say, on one line, why this migration may break the rule")
    migration = context.get_context()
    if migration.as_sql:
        migration.impl.static_output(f"-- squawk-ignore-file {', '.join(rules)}  -- {reason}")


def upgrade_sql(config: Config) -> dict[str, str]:
    """Each migration's upgrade, as the SQL PostgreSQL would run, by migration file name."""
    sql = {}
    for script in reversed(list(ScriptDirectory.from_config(config).walk_revisions())):
        output = io.StringIO()
        config.output_buffer = output
        config.attributes["url"] = POSTGRESQL_URL
        previous = script.down_revision
        assert previous is None or isinstance(previous, str), "the history is linear"
        command.upgrade(
            config, f"{previous}:{script.revision}" if previous else script.revision, sql=True
        )
        sql[Path(script.path).name] = output.getvalue()
    return sql


def squawk(sql: str, label: str) -> subprocess.CompletedProcess[str]:
    # The squawk next to this interpreter (the virtualenv's, from requirements-dev.txt).
    executable = Path(sys.executable).parent / "squawk"
    return subprocess.run(  # noqa: S603 - our own command and arguments
        [str(executable), "--config", str(ROOT / ".squawk.toml"), "--stdin-filepath", label],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def main(alembic_ini: Path = ROOT / "alembic.ini") -> int:
    config = Config(str(alembic_ini))
    config.attributes["configure_logger"] = False
    failed = 0
    migrations = upgrade_sql(config)
    for name, sql in migrations.items():
        result = squawk(sql, f"{name} (upgrade SQL)")
        if result.returncode != 0:
            failed += 1
            print(result.stdout + result.stderr, end="")
    if failed:
        print(
            f"squawk: {failed} of {len(migrations)} migrations would be unsafe on a table with "
            "rows; see docs/schema-changes.md",
            file=sys.stderr,
        )
        return 1
    print(f"squawk: the SQL of {len(migrations)} migrations passes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
