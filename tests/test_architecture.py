"""The rules that keep the codebase copyable: every feature registered, imports one way."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI

from core.data.db import metadata
from features.registry import INSTALLED_FEATURES, import_models

ROOT = Path(__file__).resolve().parent.parent
FEATURES_DIR = ROOT / "features"


def feature_folders() -> set[str]:
    return {
        path.name
        for path in FEATURES_DIR.iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    }


def test_every_feature_folder_is_registered() -> None:
    unregistered = feature_folders() - set(INSTALLED_FEATURES)
    assert not unregistered, f"add {sorted(unregistered)} to features/registry.py"


# Every feature folder has the scaffold's files, so copying one is mechanical...
REQUIRED_FILES = {"__init__.py", "models.py", "errors.py", "service.py", "router.py"}
# ...and may add only these, each for one job (docs/add-a-feature.md lists them too).
OPTIONAL_FILES = {
    "dependencies.py",  # FastAPI dependencies other features import (users: CurrentUser)
    "mails.py",  # the words of the feature's mails
    "jobs.py",  # the feature's background jobs
    "permissions.py",  # the permissions the feature declares (core/permissions.py)
}
# ...and users, the one door every feature comes in by, keeps what every credential shares,
# and where an account is signed in, in files of their own.
OPTIONAL_FILES_OF = {"users": {"authority.py", "sessions.py"}}


def test_every_feature_folder_has_the_scaffolds_shape() -> None:
    for name in sorted(feature_folders()):
        files = {path.name for path in (FEATURES_DIR / name).glob("*.py")}
        missing = REQUIRED_FILES - files
        assert not missing, f"features/{name} lacks {sorted(missing)}"
        extra = files - REQUIRED_FILES - OPTIONAL_FILES - OPTIONAL_FILES_OF.get(name, set())
        assert not extra, f"features/{name} has {sorted(extra)}: not one of {OPTIONAL_FILES}"
        folders = [path.name for path in (FEATURES_DIR / name).iterdir() if path.is_dir()]
        assert set(folders) <= {"__pycache__"}, f"features/{name} has folders {folders}"


def test_feature_code_uses_no_orm_internals() -> None:
    """Speed idioms live in core as named helpers; feature code (and the scaffold, whose output
    is feature code) reads like plain SQLModel."""
    sources = [*FEATURES_DIR.rglob("*.py"), *(ROOT / "scaffold" / "templates").rglob("*.tmpl")]
    for path in sources:
        text = path.read_text()
        for internal in ("__table__", "type: ignore", ".connection()", "bindparam"):
            assert internal not in text, f"{path.relative_to(ROOT)} uses {internal!r}"


def test_every_feature_router_is_mounted_under_the_api_prefix(app: FastAPI) -> None:
    openapi_paths = set(app.openapi()["paths"])
    for name in INSTALLED_FEATURES:
        prefix = "/api/v1" + importlib.import_module(f"features.{name}.router").router.prefix
        assert any(path.startswith(prefix) for path in openapi_paths), name


def test_every_table_reaches_alembic_metadata() -> None:
    import_models()
    expected = {"users", "refresh_tokens", "account_tokens", "row_counts", "audit_events"}
    assert expected <= set(metadata.tables)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` (a file of `package`) imports, at any depth (function-level
    imports included), relative imports resolved against the package."""
    parts = package.split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def imports_of(path: Path) -> set[str]:
    return imported_modules(path.read_text(), ".".join(path.relative_to(ROOT).parent.parts))


def test_relative_imports_are_seen_as_the_modules_they_name() -> None:
    source = "from ..auth import service\nfrom .. import recovery\nfrom .models import Widget\n"
    found = imported_modules(source, "features.widgets")
    assert {"features.auth", "features.recovery", "features.widgets.models"} <= found


# The accounts every feature builds on; any feature may import them.
SHARED_FEATURE = "users"


def test_a_feature_imports_core_itself_and_users_only() -> None:
    """Checked for every folder under features/, a scaffolded one included the moment it
    exists: a copied feature cannot quietly come to depend on a sibling. Which feature reacts
    to which is wired in one place, features/registry.py (`connect_features`)."""
    for name in sorted(feature_folders()):
        allowed = {name} if name == SHARED_FEATURE else {name, SHARED_FEATURE}
        for path in sorted((FEATURES_DIR / name).glob("*.py")):
            for module in imports_of(path):
                parts = module.split(".")
                if parts[0] == "features" and len(parts) > 1:
                    assert parts[1] in allowed, (
                        f"{path.relative_to(ROOT)} imports {module}: a feature imports core, "
                        f"itself and features.{SHARED_FEATURE} only"
                    )


def test_core_imports_no_feature() -> None:
    for path in sorted((ROOT / "core").rglob("*.py")):
        features = {module for module in imports_of(path) if module.startswith("features")}
        assert not features, f"{path.relative_to(ROOT)} imports {sorted(features)}"


def test_import_contracts_hold() -> None:
    """core <- users <- auth | recovery <- main, checked by import-linter (pyproject.toml);
    the two tests above cover features that contract does not name yet."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
