"""Operational commands, run once per deploy rather than by every web process.

python manage.py migrate     # alembic upgrade head (replicas may race: a lock serializes)
python manage.py superuser   # create FIRST_SUPERUSER_EMAIL if it does not exist yet
python manage.py init-env    # write .env from .env.example with fresh random secrets
"""

import argparse
import secrets
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from core.config import get_settings
from core.db import Database
from core.security import PasswordHasher, password_byte_length_error
from features.users import service as users_service

ROOT = Path(__file__).resolve().parent


def migrate() -> int:
    command.upgrade(Config(str(ROOT / "alembic.ini")), "head")
    return 0


def create_first_superuser() -> int:
    settings = get_settings()
    email, password = settings.FIRST_SUPERUSER_EMAIL, settings.FIRST_SUPERUSER_PASSWORD
    if not email or not password:
        print("FIRST_SUPERUSER_EMAIL or FIRST_SUPERUSER_PASSWORD not set: no superuser created")
        return 0
    problem = password_byte_length_error(password)
    if problem:
        print(f"FIRST_SUPERUSER_PASSWORD {problem}", file=sys.stderr)
        return 1
    database = Database.from_settings(settings)
    try:
        with database.session() as session:
            if users_service.get_by_email(session, email) is not None:
                print(f"superuser {email}: account exists, left unchanged")
                return 0
            hashed = PasswordHasher(settings.BCRYPT_ROUNDS, concurrency=1).hash(password)
            created = users_service.ensure_first_superuser(session, email, hashed)
    finally:
        database.dispose()
    print(f"superuser {email}: {'created' if created else 'account exists, left unchanged'}")
    return 0


def init_env() -> int:
    """A local .env with its own secrets, so no two checkouts share a key or a password."""
    target = ROOT / ".env"
    if target.exists():
        print(".env exists, left unchanged")
        return 0
    password = secrets.token_urlsafe(12)
    email = ""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("SECRET_KEY="):
            line = f"SECRET_KEY={secrets.token_urlsafe(48)}"
        elif line.startswith("POSTGRES_PASSWORD="):
            line = f"POSTGRES_PASSWORD={secrets.token_urlsafe(24)}"
        elif line.startswith("FIRST_SUPERUSER_PASSWORD="):
            line = f"FIRST_SUPERUSER_PASSWORD={password}"
        elif line.startswith("FIRST_SUPERUSER_EMAIL="):
            email = line.partition("=")[2]
        lines.append(line)
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote .env; log in to /docs as {email} with password {password}")
    return 0


COMMANDS = {"migrate": migrate, "superuser": create_first_superuser, "init-env": init_env}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    return COMMANDS[args.command]()


if __name__ == "__main__":
    sys.exit(main())
