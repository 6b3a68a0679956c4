"""`python -m scaffold <name>` writes a feature that migrates, passes its own tests and the
project's linters, and changes nothing else but one line of the registry.

Everything runs in a copy of the project, on an SQLite file of its own, whatever database the
rest of the suite uses, and with a name no feature of the project has taken: these tests pass
whatever features a team has added (with the scaffold or by hand).
"""

import difflib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import Settings
from scaffold import Names, Refused, check_name, register

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "main.py",
    "manage.py",
    "alembic.ini",
    "pyproject.toml",
    "core",
    "features",
    "migrations",
    "scaffold",
    "tests/__init__.py",
    "tests/conftest.py",
)


def unused_name() -> str:
    """`gadgets`, or `gadget2s`, `gadget3s`...: the first name the project has not taken."""
    for candidate in ("gadgets", *(f"gadget{number}s" for number in range(2, 100))):
        try:
            check_name(candidate, ROOT)
        except Refused:
            continue
        return candidate
    raise AssertionError("every candidate name is taken")


NAME = unused_name()
# What the generated tests/<name>/test_<name>.py holds (parametrized cases counted): update it
# with the template, so a test silently dropped from the template is noticed.
EXPECTED_GENERATED_TESTS = 33
FEATURE_FILES = {
    "__init__.py",
    "models.py",
    "errors.py",
    "service.py",
    "router.py",
    "permissions.py",
}
# Folders .gitignore keeps out of `git diff`: the linters' caches, bytecode, the virtualenv.
UNTRACKED = {".venv", "__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache"}
INVALID_NAMES = [NAME, NAME.capitalize(), "1abc", "class", "users", "core", "errors", "sessions"]


@dataclass
class Run:
    returncode: int
    output: str


@dataclass
class Scaffolded:
    root: Path
    env: dict[str, str]
    before: dict[str, bytes]
    after: dict[str, bytes]
    generated: Run
    mypy_cache: Path


def copy_project(target: Path) -> None:
    for source in SOURCES:
        origin, copy = ROOT / source, target / source
        if origin.is_dir():
            shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, copy)
    # alembic.ini formats new migrations with .venv/bin/ruff: the same ruff as this run's.
    bin_dir = target / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "ruff").symlink_to(Path(sys.executable).parent / "ruff")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every source file of the copy, by relative path: the tree `git diff` would compare."""
    files = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not UNTRACKED & set(relative.parts):
            files[relative.as_posix()] = path.read_bytes()
    return files


def environment(database_url: str) -> dict[str, str]:
    """This process's environment without the app's settings or the suite's database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in Settings.model_fields and not key.startswith(("TEST_", "PYTEST_"))
    }
    env.update(DATABASE_URL=database_url, PYTHONDONTWRITEBYTECODE="1")
    return env


def run(root: Path, env: dict[str, str], *args: str) -> Run:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return Run(result.returncode, result.stdout + result.stderr)


def lint(root: Path, env: dict[str, str], mypy_cache: Path, *paths: str) -> None:
    """The project's own gates, with the copy's pyproject.toml."""
    for args in (
        ("-m", "ruff", "check", "--no-cache", *paths),
        ("-m", "ruff", "format", "--check", "--no-cache", *paths),
        ("-m", "mypy", "--cache-dir", str(mypy_cache), *paths),
    ):
        result = run(root, env, *args)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.output}"


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's mypy cache when there is one: the libraries need no recheck."""
    cache = tmp_path_factory.mktemp("mypy") / "cache"
    if (ROOT / ".mypy_cache").is_dir():
        shutil.copytree(ROOT / ".mypy_cache", cache)
    return cache


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory, mypy_cache: Path) -> Scaffolded:
    """A copy of the project with NAME generated and its migration written and applied."""
    base = tmp_path_factory.mktemp("scaffold")
    root = base / "project"
    copy_project(root)
    env = environment(f"sqlite:///{base / 's.db'}")
    before = snapshot(root)
    generated = run(root, env, "-m", "scaffold", NAME)
    if generated.returncode == 0:
        for args in (
            ("manage.py", "migrate"),
            ("-m", "alembic", "revision", "--autogenerate", "-m", f"add {NAME}"),
            ("manage.py", "migrate"),
        ):
            result = run(root, env, *args)
            assert result.returncode == 0, f"{' '.join(args)}:\n{result.output}"
    return Scaffolded(root, env, before, snapshot(root), generated, mypy_cache)


def test_generation_succeeds_and_says_what_comes_next(scaffolded: Scaffolded) -> None:
    assert scaffolded.generated.returncode == 0, scaffolded.generated.output
    assert f'make migration m="add {NAME}"' in scaffolded.generated.output


def test_only_the_registry_changes_outside_the_new_folders(scaffolded: Scaffolded) -> None:
    before, after = scaffolded.before, scaffolded.after
    assert set(before) <= set(after), "files were removed"
    changed = {path for path in before if before[path] != after[path]}
    assert changed == {"features/registry.py"}
    added = set(after) - set(before)
    migrations = {path for path in added if path.startswith("migrations/versions/")}
    assert len(migrations) == 1, migrations
    assert added - migrations == {
        *(f"features/{NAME}/{name}" for name in FEATURE_FILES),
        f"tests/{NAME}/__init__.py",
        f"tests/{NAME}/test_{NAME}.py",
    }
    diff = difflib.ndiff(
        before["features/registry.py"].decode().splitlines(),
        after["features/registry.py"].decode().splitlines(),
    )
    assert [line for line in diff if line[:2] in ("+ ", "- ")] == [f'+     "{NAME}",']


def test_the_autogenerated_migration_creates_the_owned_table(scaffolded: Scaffolded) -> None:
    (migration,) = [
        content.decode()
        for path, content in scaffolded.after.items()
        if path.startswith("migrations/versions/") and path not in scaffolded.before
    ]
    assert f'op.create_table(\n        "{NAME}",' in migration
    assert '["owner_id"], ["users.id"]' in migration
    assert 'ondelete="CASCADE"' in migration
    assert f'"ix_{NAME}_owner_id_created_at_id", ["owner_id", "created_at", "id"]' in migration


def test_the_generated_tests_pass(scaffolded: Scaffolded) -> None:
    result = run(
        scaffolded.root,
        scaffolded.env,
        "-m",
        "pytest",
        "-q",
        f"tests/{NAME}",
        "-p",
        "no:cacheprovider",
    )
    assert result.returncode == 0, result.output
    assert f"{EXPECTED_GENERATED_TESTS} passed" in result.output, result.output


# Prints `METHOD path operationId statuses` for each generated route, from the copy's own app.
PRINT_GENERATED_OPERATIONS = """
import sys
from main import create_app
for path, item in create_app().openapi()["paths"].items():
    for method, operation in item.items():
        if path.startswith(f"/api/v1/{sys.argv[1]}"):
            print(method, path, operation["operationId"], *sorted(operation["responses"]))
"""


def test_the_generated_routes_get_readable_operation_ids(scaffolded: Scaffolded) -> None:
    names = Names.from_plural(NAME)
    result = run(scaffolded.root, scaffolded.env, "-c", PRINT_GENERATED_OPERATIONS, names.slug)
    assert result.returncode == 0, result.output
    printed = [line.split() for line in result.output.splitlines()]
    # Only the printed operations: the app may log a start-up warning or two as well.
    operations = {
        tuple(words[:3]): words[3:]
        for words in printed
        if words and words[0] in {"get", "post", "patch", "delete"}
    }
    collection, item = f"/api/v1/{names.slug}", f"/api/v1/{names.slug}/{{{names.item}_id}}"
    assert set(operations) == {
        ("get", collection, f"{names.slug}-list_{NAME}"),
        ("post", collection, f"{names.slug}-create_{names.item}"),
        ("get", item, f"{names.slug}-read_{names.item}"),
        ("patch", item, f"{names.slug}-update_{names.item}"),
        ("delete", item, f"{names.slug}-delete_{names.item}"),
    }
    for statuses in operations.values():
        assert {"400", "401", "413", "503"} <= set(statuses)


def test_the_generated_code_meets_the_project_standards(scaffolded: Scaffolded) -> None:
    lint(
        scaffolded.root, scaffolded.env, scaffolded.mypy_cache, f"features/{NAME}", f"tests/{NAME}"
    )


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_a_taken_or_invalid_name_is_refused_and_writes_nothing(
    scaffolded: Scaffolded, name: str
) -> None:
    result = run(scaffolded.root, scaffolded.env, "-m", "scaffold", name)
    assert result.returncode == 2, result.output
    assert "refused" in result.output
    assert snapshot(scaffolded.root) == scaffolded.after


def test_the_longest_allowed_name_still_meets_the_linters(tmp_path: Path, mypy_cache: Path) -> None:
    root = tmp_path / "project"
    copy_project(root)
    env = environment(f"sqlite:///{tmp_path / 's.db'}")
    name = "a_rather_long_feature_names_tags"
    assert len(name) == 32
    result = run(root, env, "-m", "scaffold", name)
    assert result.returncode == 0, result.output
    lint(root, env, mypy_cache, f"features/{name}", f"tests/{name}")
    assert run(root, env, "-m", "scaffold", name + "s").returncode == 2


@pytest.mark.parametrize(
    ("plural", "model", "item", "slug"),
    [
        ("widgets", "Widget", "widget", "widgets"),
        ("blog_posts", "BlogPost", "blog_post", "blog-posts"),
        ("categories", "Category", "category", "categories"),
        ("boxes", "Box", "box", "boxes"),
    ],
)
def test_names_follow_the_users_conventions(plural: str, model: str, item: str, slug: str) -> None:
    names = Names.from_plural(plural)
    assert (names.model, names.item, names.slug) == (model, item, slug)


def test_registering_twice_adds_one_line() -> None:
    source = (ROOT / "features" / "registry.py").read_text()
    once = register(source, NAME)
    assert once.count(f'"{NAME}",') == 1
    assert register(once, NAME) == once
    assert len(once.splitlines()) == len(source.splitlines()) + 1
