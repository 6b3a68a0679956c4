"""Secrets as files (SECRETS_DIR), the way the Kubernetes manifests hand them to every pod:
the migration Job's own commands run for real against a Secret-shaped directory."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import ROOT
from tests.support import fresh_database

SECRET_SETTINGS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "DATABASE_READ_URL",
    "REDIS_URL",
    "FIRST_SUPERUSER_EMAIL",
    "FIRST_SUPERUSER_PASSWORD",
)
SUPERUSER_PASSWORD = "mounted-admin-password"


def mount_secret(directory: Path, values: dict[str, str]) -> Path:
    """Lay files out as the kubelet does: each key a symlink into a `..data` directory."""
    data = directory / "..2026_01_01_00_00_00.000000001"
    data.mkdir(parents=True)
    (directory / "..data").symlink_to(data.name)
    for key, value in values.items():
        # `kubectl create secret --from-file` keeps a file's trailing newline.
        (data / key).write_text(value + "\n")
        (directory / key).symlink_to(f"..data/{key}")
    return directory


def run_manage(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in SECRET_SETTINGS}
    base.pop("SECRETS_DIR", None)
    base.update(ENVIRONMENT="production", BCRYPT_ROUNDS="4", LOG_LEVEL="WARNING")
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), command],
        # Not the repository: a developer's .env there must not stand in for the files.
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_and_superuser_take_every_secret_from_the_mounted_files(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database_url:
        secrets = mount_secret(
            tmp_path / "secrets",
            {
                "SECRET_KEY": "mounted-secret-key-0123456789-abcdefghijklmnop",
                "DATABASE_URL": database_url,
                "FIRST_SUPERUSER_EMAIL": "boss@example.com",
                "FIRST_SUPERUSER_PASSWORD": SUPERUSER_PASSWORD,
            },
        )
        migrated = run_manage("migrate", tmp_path, SECRETS_DIR=str(secrets))
        created = run_manage("superuser", tmp_path, SECRETS_DIR=str(secrets))

        assert migrated.returncode == 0, migrated.stderr
        assert created.returncode == 0, created.stderr
        assert "superuser boss@example.com: created" in created.stdout
        for output in (migrated.stdout, migrated.stderr, created.stdout, created.stderr):
            assert SUPERUSER_PASSWORD not in output
        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:
                superusers = connection.execute(
                    text("SELECT email FROM users WHERE is_superuser")
                ).all()
        finally:
            engine.dispose()
        assert [row.email for row in superusers] == ["boss@example.com"]


def test_an_environment_variable_wins_over_its_file(tmp_path: Path) -> None:
    secrets = mount_secret(
        tmp_path / "secrets",
        {
            "SECRET_KEY": "mounted-secret-key-0123456789-abcdefghijklmnop",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'from-file.db'}",
        },
    )

    migrated = run_manage(
        "migrate",
        tmp_path,
        SECRETS_DIR=str(secrets),
        DATABASE_URL=f"sqlite:///{tmp_path / 'from-env.db'}",
    )

    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "from-env.db").exists()
    assert not (tmp_path / "from-file.db").exists()


def test_production_refuses_to_start_when_neither_holds_the_secret_key(tmp_path: Path) -> None:
    secrets = mount_secret(tmp_path / "secrets", {"DATABASE_URL": "sqlite:///unused.db"})

    without_key = run_manage("migrate", tmp_path, SECRETS_DIR=str(secrets))

    assert without_key.returncode != 0
    assert "SECRET_KEY must be set" in without_key.stderr
    assert not (tmp_path / "unused.db").exists()
