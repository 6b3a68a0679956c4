"""Operational commands, run once per deploy rather than by every web process.

python manage.py migrate     # alembic upgrade head (replicas may race: a lock serializes)
python manage.py superuser   # create FIRST_SUPERUSER_EMAIL if it does not exist yet
python manage.py init-env    # write .env from .env.example with fresh random secrets
python manage.py worker      # run background jobs until SIGTERM (core/jobs/worker.py)
python manage.py jobs list [--status failed] | jobs retry ID... | jobs retry --all-failed
"""

import argparse
import importlib
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

from core.config import get_settings
from core.data.db import Database
from core.jobs import queue as job_queue

ROOT = Path(__file__).resolve().parent

# Each command imports what only it needs, so `jobs list` starts without loading Alembic
# or the account code.


def migrate() -> int:
    from alembic import command
    from alembic.config import Config

    command.upgrade(Config(str(ROOT / "alembic.ini")), "head")
    return 0


def create_first_superuser() -> int:
    from core.security import PasswordHasher, password_length_error
    from features.users import service as users_service

    settings = get_settings()
    email, password = settings.FIRST_SUPERUSER_EMAIL, settings.FIRST_SUPERUSER_PASSWORD
    if not email or not password:
        print("FIRST_SUPERUSER_EMAIL or FIRST_SUPERUSER_PASSWORD not set: no superuser created")
        return 0
    problem = password_length_error(password)
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


def worker(extra_modules: list[str]) -> int:
    """Every job the app can enqueue is declared in a module its routers import, and every
    periodic one in a feature's jobs.py."""
    from core.jobs import worker as job_worker
    from core.observability.logging import configure_logging
    from features.registry import connect_features, import_jobs, import_routers

    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json_lines=settings.ENVIRONMENT == "production")
    import_routers()
    import_jobs()
    connect_features()  # jobs that change an account react as the app does
    for module in extra_modules:
        importlib.import_module(module)
    return job_worker.run(settings)


def _queue_database() -> Database | None:
    settings = get_settings()
    if settings.jobs_run_in_process:
        print(
            "no job queue: JOBS_MODE is in-process (the default on SQLite), jobs run inside "
            "the process that enqueues them and failed ones are only in its log",
            file=sys.stderr,
        )
        return None
    return Database.from_settings(settings)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def jobs_list(status: str | None, limit: int) -> int:
    database = _queue_database()
    if database is None:
        return 1
    try:
        with database.session(read_only=True) as session:
            found = job_queue.list_jobs(session, status=status, limit=limit)
            stats = job_queue.stats(session)
    finally:
        database.dispose()
    header = ("ID", "STATUS", "TRIES", "JOB", "ENQUEUED (UTC)", "LAST CHANGE (UTC)", "ARGUMENTS")
    rows = [
        (
            str(job.id),
            job.status,
            str(job.attempts),
            job.task_name,
            _when(job.enqueued_at),
            _when(job.changed_at),
            ", ".join(job.argument_names) or "-",
        )
        for job in found
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"{len(rows)} shown; queue: {stats.describe()}")
    return 0


def jobs_retry(ids: list[int], every_failed: bool) -> int:
    if not ids and not every_failed:
        print("name the job ids to retry, or --all-failed", file=sys.stderr)
        return 2
    database = _queue_database()
    if database is None:
        return 1
    try:
        with database.session() as session:
            retried = job_queue.retry_failed(session, None if every_failed else ids)
    finally:
        database.dispose()
    if retried:
        print(f"queued again, each with a fresh set of attempts: {', '.join(map(str, retried))}")
    not_failed = sorted(set(ids) - set(retried))
    if not_failed:
        print(f"not failed (or no such job), left alone: {', '.join(map(str, not_failed))}")
        return 1
    if not retried:
        print("no failed job")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


COMMANDS = {"migrate": migrate, "superuser": create_first_superuser, "init-env": init_env}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        commands.add_parser(name)
    worker_command = commands.add_parser("worker", help="run background jobs until SIGTERM")
    worker_command.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="also import MODULE for the jobs it declares (repeatable)",
    )
    jobs_command = commands.add_parser("jobs", help="look at the job queue, retry failed jobs")
    jobs_actions = jobs_command.add_subparsers(dest="action", required=True)
    listing = jobs_actions.add_parser("list", help="the newest jobs, newest first")
    listing.add_argument("--status", choices=job_queue.STATUSES)
    listing.add_argument("--limit", type=_positive, default=50, help="at most this many (50)")
    retry = jobs_actions.add_parser("retry", help="queue failed jobs again")
    retry.add_argument("ids", type=int, nargs="*", metavar="ID")
    retry.add_argument("--all-failed", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return worker(args.modules)
    if args.command == "jobs":
        if args.action == "list":
            return jobs_list(args.status, args.limit)
        return jobs_retry(args.ids, args.all_failed)
    return COMMANDS[args.command]()


if __name__ == "__main__":
    sys.exit(main())
