import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session

from features.users import service
from features.users.models import User

ROOT = Path(__file__).resolve().parent.parent


def run_manage(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", command],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_first_superuser_is_created_once_and_never_overwritten(session: Session) -> None:
    assert service.ensure_first_superuser(session, "Boss@Example.com", "hash-one")
    assert not service.ensure_first_superuser(session, "boss@example.com", "hash-two")
    user = service.get_by_email(session, "boss@example.com")
    assert user is not None
    assert (user.is_superuser, user.hashed_password) == (True, "hash-one")


def test_an_existing_regular_account_is_not_promoted(session: Session) -> None:
    session.add(User(name="Early Bird", email="boss@example.com", hashed_password="theirs"))
    session.commit()
    assert not service.ensure_first_superuser(session, "boss@example.com", "hash")
    user = service.get_by_email(session, "boss@example.com")
    assert user is not None
    assert not user.is_superuser


def test_manage_commands_migrate_and_create_the_superuser(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'manage.db'}",
        "FIRST_SUPERUSER_EMAIL": "admin@example.com",
        "FIRST_SUPERUSER_PASSWORD": "a-strong-password",
        "BCRYPT_ROUNDS": "4",
    }
    assert run_manage("migrate", env).returncode == 0
    first = run_manage("superuser", env)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    second = run_manage("superuser", {**env, "FIRST_SUPERUSER_PASSWORD": "another-password"})
    assert "left unchanged" in second.stdout
