"""A team's first schema change, on PostgreSQL and SQLite: scaffold a feature, fill its table
through the API, add the defaulted field the scaffold's template shows, and run what `make
migration` and `make migrate` run. The migration gives the column a server default, applies
over the rows, goes down and up again, and passes squawk; a field whose default only Python
can compute gets no migration, and a message saying what to write.

Everything runs in a copy of the project (tests/test_scaffold.py's), on a database of its own.
"""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from scaffold import Names
from tests.conftest import DEFAULT_PASSWORD, ROOT, TEST_SECRET_KEY
from tests.support import fresh_postgres_database, postgres_test_url
from tests.test_scaffold import copy_project, environment, run, unused_name

NAME = unused_name()
NAMES = Names.from_plural(NAME)
ROWS_PER_OWNER = 3

# Two owners sign up and sign in over the API, and each creates rows of the feature.
SEED = """
import sys
from starlette.testclient import TestClient
from main import create_app

slug, rows, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with TestClient(create_app()) as client:
    for owner in range(2):
        email = f"owner{owner}@example.com"
        body = {"name": "Owner", "email": email, "password": password}
        assert client.post("/api/v1/auth/register", json=body).status_code == 201
        signed_in = client.post(
            "/api/v1/auth/login", data={"username": email, "password": password}
        )
        headers = {"Authorization": "Bearer " + signed_in.json()["access_token"]}
        for number in range(rows):
            body = {"title": f"row {number}"}
            created = client.post(f"/api/v1/{slug}", json=body, headers=headers)
            assert created.status_code == 201, created.text
print("seeded")
"""

# `make migration` and `make migrate` are `manage.py migrate`, `alembic revision
# --autogenerate` and `manage.py migrate` again: the same alembic commands, here in one process
# per model change (each process start costs seconds).
ALEMBIC = """
import sys
from alembic import command
from alembic.config import Config

config = Config("alembic.ini")
for step in sys.argv[1:]:
    name, _, argument = step.partition(":")
    if name == "revision":
        command.revision(config, message=argument, autogenerate=True)
    else:
        getattr(command, name)(config, argument)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    if not postgres_test_url():
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    with fresh_postgres_database() as url:
        yield url


def migrations(root: Path) -> set[str]:
    return {path.name for path in (root / "migrations" / "versions").glob("*.py")}


def succeed(root: Path, env: dict[str, str], *args: str) -> str:
    result = run(root, env, *args)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.output}"
    return result.output


def uncomment(source: str, first_line: str) -> str:
    """One of the template's commented examples: its first line, and the lines up to its
    closing parenthesis when that line opens one."""
    lines = source.splitlines()
    index = lines.index(f"    # {first_line}")
    while True:
        line = lines[index].removeprefix("    # ")
        lines[index] = f"    {line}"
        if not first_line.endswith("(") or line == ")":
            break
        index += 1
    return "\n".join(lines) + "\n"


def test_a_defaulted_field_added_to_a_table_with_rows_migrates(
    tmp_path: Path, database_url: str
) -> None:
    root = tmp_path / "project"
    copy_project(root)
    (root / ".squawk.toml").write_bytes((ROOT / ".squawk.toml").read_bytes())
    env = environment(database_url)
    env.update(
        ENVIRONMENT="test", SECRET_KEY=TEST_SECRET_KEY, BCRYPT_ROUNDS="4", LOG_LEVEL="WARNING"
    )
    succeed(root, env, "-m", "scaffold", NAME)
    succeed(root, env, "-c", ALEMBIC, "upgrade:head", f"revision:add {NAME}", "upgrade:head")
    seeded = succeed(root, env, "-c", SEED, NAMES.slug, str(ROWS_PER_OWNER), DEFAULT_PASSWORD)
    assert "seeded" in seeded

    # The template's first example, as a team would uncomment it.
    models = root / "features" / NAME / "models.py"
    models.write_text(uncomment(models.read_text(), "archived: bool = False"))
    before = migrations(root)
    # Over the rows: up, down and up again.
    steps = ("upgrade:head", f"revision:archive {NAME}", "upgrade:head", "downgrade:-1")
    succeed(root, env, "-c", ALEMBIC, *steps, "upgrade:head")
    (added,) = migrations(root) - before
    migration = (root / "migrations" / "versions" / added).read_text()
    assert re.search(r'"archived", sa\.Boolean\(\), server_default="0", nullable=False', migration)
    assert archived_values(database_url) == [False] * (2 * ROWS_PER_OWNER)
    # The app reads and writes the new column: two more rows, one per owner.
    succeed(
        root, env, "-c", SEED.replace("range(2)", "range(2, 4)"), NAMES.slug, "1", DEFAULT_PASSWORD
    )
    assert archived_values(database_url) == [False] * (2 * ROWS_PER_OWNER + 2)
    assert "migrations passes" in succeed(root, env, "-m", "migrations.lint")

    # A default only Python can compute, and none for the database: refused, nothing written.
    with_archived = models.read_text()
    serial = "    serial: uuid.UUID = Field(default_factory=uuid.uuid4)\n"
    models.write_text(
        with_archived.replace(
            "    archived: bool = False\n", f"    archived: bool = False\n{serial}"
        )
    )
    before = migrations(root)
    refused = run(root, env, "-c", ALEMBIC, "revision:serials")
    assert refused.returncode != 0
    assert migrations(root) == before
    assert f"{NAME}.serial is added NOT NULL" in refused.output
    assert "`uuid4` (computed in Python)" in refused.output
    assert '"server_default"' in refused.output  # how to give the database a default
    assert "make it nullable" in refused.output
    models.write_text(with_archived)

    # The template's second example: a default computed in Python, and one for the database.
    source = uncomment(models.read_text(), "archived_at: datetime = Field(")
    models.write_text(source.replace("from sqlalchemy import ", "from sqlalchemy import text, "))
    succeed(root, env, "-c", ALEMBIC, "revision:archived at", "upgrade:head")
    assert "migrations passes" in succeed(root, env, "-m", "migrations.lint")


def archived_values(database_url: str) -> list[bool]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(f"SELECT archived FROM {NAME}"))  # noqa: S608
            return [bool(value) for (value,) in rows]
    finally:
        engine.dispose()
