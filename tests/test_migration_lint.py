"""squawk reads every migration's PostgreSQL SQL (`make lint`): the migrations here pass, and
the changes that hurt a table with rows, or the pods of the previous release, fail."""

import shutil
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from migrations import lint
from tests.conftest import ROOT, alembic_config

# Each statement, on a table that has rows, and the squawk rule that refuses it.
UNSAFE = {
    "adding-required-field": (
        'op.add_column("users", sa.Column("nickname", sa.String(40), nullable=False))'
    ),
    "require-concurrent-index-creation": 'op.create_index("ix_users_name", "users", ["name"])',
    "changing-column-type": 'op.alter_column("users", "name", type_=sa.String(200))',
    "adding-not-nullable-field": 'op.alter_column("refresh_tokens", "revoked_at", nullable=False)',
    "adding-field-with-default": (
        'op.add_column("users", sa.Column("public_id", sa.Uuid(),'
        ' server_default=sa.text("gen_random_uuid()")))'
    ),
    "adding-foreign-key-constraint": (
        'op.create_foreign_key("fk_t", "account_tokens", "refresh_tokens", ["id"], ["id"])'
    ),
    "disallowed-unique-constraint": (
        'op.create_unique_constraint("uq_users_name", "users", ["name"])'
    ),
    "renaming-column": 'op.alter_column("users", "name", new_column_name="full_name")',
    "ban-drop-column": 'op.drop_column("users", "token_version")',
}

MIGRATION = '''"""one unsafe change"""

import sqlalchemy as sa
from alembic import op

from migrations.lint import squawk_ignore

revision = "{revision}"
down_revision = "{down_revision}"


def upgrade() -> None:
    {waiver}
    {statement}


def downgrade() -> None:
    pass
'''


def project_with(tmp_path: Path, rule: str, *, waived: bool = False) -> Path:
    """alembic.ini and a copy of migrations/ with one more migration, breaking `rule`."""
    shutil.copy2(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", migrations, ignore=shutil.ignore_patterns("__pycache__"))
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    waiver = f'squawk_ignore("{rule}", reason="a test says so")' if waived else "pass"
    (migrations / "versions" / "0unsafe000001_unsafe.py").write_text(
        MIGRATION.format(
            revision="0unsafe000001", down_revision=head, waiver=waiver, statement=UNSAFE[rule]
        )
    )
    return tmp_path / "alembic.ini"


def test_every_migration_here_passes_squawk(capsys: pytest.CaptureFixture[str]) -> None:
    assert lint.main() == 0, capsys.readouterr()
    migrations = len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    assert f"the SQL of {migrations} migrations passes" in capsys.readouterr().out


@pytest.mark.parametrize("rule", sorted(UNSAFE))
def test_an_unsafe_change_fails_with_the_rule_it_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str
) -> None:
    assert lint.main(project_with(tmp_path, rule)) == 1
    report = capsys.readouterr()
    assert rule in report.out
    assert "0unsafe000001_unsafe.py (upgrade SQL)" in report.out
    assert "1 of " in report.err


def test_a_waiver_with_its_reason_lets_the_migration_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lint.main(project_with(tmp_path, "ban-drop-column", waived=True)) == 0, (
        capsys.readouterr()
    )


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ((), "why"),
        (("ban drop column",), "why"),
        (("ban-drop-column",), " "),
        (("ban-drop-column",), "a\nb"),
    ],
)
def test_a_waiver_needs_rule_names_and_a_one_line_reason(
    rules: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(ValueError, match=r"squawk rule names|why this migration"):
        lint.squawk_ignore(*rules, reason=reason)
