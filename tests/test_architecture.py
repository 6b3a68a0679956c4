"""The rules that keep the codebase copyable: every feature registered, imports one way."""

import importlib
import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI

from core.db import metadata
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


def test_every_registered_feature_exists_with_the_standard_files() -> None:
    for name in INSTALLED_FEATURES:
        for module in ("models.py", "service.py", "router.py"):
            assert (FEATURES_DIR / name / module).exists(), f"features/{name}/{module}"


def test_every_feature_router_is_mounted_under_the_api_prefix(app: FastAPI) -> None:
    openapi_paths = set(app.openapi()["paths"])
    for name in INSTALLED_FEATURES:
        prefix = "/api/v1" + importlib.import_module(f"features.{name}.router").router.prefix
        assert any(path.startswith(prefix) for path in openapi_paths), name


def test_every_table_reaches_alembic_metadata() -> None:
    import_models()
    assert {"users", "refresh_tokens", "account_tokens", "row_counts"} <= set(metadata.tables)


def test_import_contracts_hold() -> None:
    """core <- users <- auth <- main, checked by import-linter (config in pyproject.toml)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
