"""A throwaway PostgreSQL database for one benchmark run: created, migrated, seeded, dropped."""

import csv
import io
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from passlib.context import CryptContext
from sqlalchemy import MetaData, Table, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgresql+psycopg2://root@127.0.0.1:5432"
# Rows per COPY: a million users load in well under a minute this way.
SEED_BATCH = 50_000


@dataclass(frozen=True)
class Account:
    email: str
    password: str


@dataclass(frozen=True)
class BenchDatabase:
    url: URL

    @property
    def name(self) -> str:
        return self.url.database or ""

    @property
    def sqlalchemy_url(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def client_args(self) -> list[str]:
        """Connection flags for createdb and dropdb."""
        args = ["-h", self.url.host or "127.0.0.1", "-p", str(self.url.port or 5432)]
        return [*args, "-U", self.url.username or "root"]

    def client_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.url.password:
            env["PGPASSWORD"] = self.url.password
        return env


def database_for_this_run() -> BenchDatabase:
    """`bench_<pid>` on the server BENCH_DATABASE_URL names (local PostgreSQL by default)."""
    server = make_url(os.environ.get("BENCH_DATABASE_URL") or DEFAULT_SERVER_URL)
    # The app is built on psycopg2; a bare `postgresql://` would pick another driver.
    return BenchDatabase(
        server.set(drivername="postgresql+psycopg2", database=f"bench_{os.getpid()}")
    )


def _client(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the PostgreSQL client programs")
    return found


def create(database: BenchDatabase) -> None:
    subprocess.run(  # noqa: S603
        [_client("createdb"), *database.client_args(), database.name],
        check=True,
        env=database.client_env(),
    )


def drop(database: BenchDatabase) -> None:
    subprocess.run(  # noqa: S603
        [_client("dropdb"), *database.client_args(), "--if-exists", "--force", database.name],
        check=False,
        env=database.client_env(),
        stdout=subprocess.DEVNULL,
    )


def migrate(database: BenchDatabase) -> None:
    env = dict(os.environ, DATABASE_URL=database.sqlalchemy_url, LOG_LEVEL="WARNING")
    finished = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        # The app under test's own migrations (servers.APP_ROOT: this checkout or another).
        cwd=Path(os.environ.get("BENCH_APP_ROOT") or ROOT),
        env=env,
        capture_output=True,
        text=True,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"migration failed:\n{finished.stdout}{finished.stderr}")


def seed_users(
    database: BenchDatabase,
    *,
    total: int,
    bcrypt_rounds: int,
    superuser: Account,
    regular: Account,
) -> None:
    """`total` accounts sharing one precomputed hash, so seeding costs one bcrypt, not 10,000.

    Both named accounts use the same password, which is what makes the shared hash valid.
    Rows go in by COPY, which fires the row-count triggers like any insert.
    """
    if superuser.password != regular.password:
        raise ValueError("the seeded accounts share one password hash")
    hashed = CryptContext(schemes=["bcrypt"], bcrypt__rounds=bcrypt_rounds).hash(regular.password)
    oldest = datetime.now(UTC) - timedelta(seconds=total)
    named = {0: (superuser.email, True), 1: (regular.email, False)}

    def row(index: int) -> dict[str, object]:
        email, is_superuser = named.get(index, (f"user{index}@bench.example.com", False))
        created = oldest + timedelta(seconds=index)
        return {
            "id": uuid.uuid4(),
            "name": f"Bench User {index}",
            "email": email,
            "hashed_password": hashed,
            "is_active": True,
            "is_superuser": is_superuser,
            "is_verified": True,
            "token_version": 0,
            "created_at": created,
            "updated_at": created,
        }

    engine = create_engine(database.url)
    try:
        # The table as migrated, not as written here: columns come and go with the schema.
        users = Table("users", MetaData(), autoload_with=engine)
        known = set(row(0))
        unknown = [
            c.name
            for c in users.columns
            if c.name not in known and not c.nullable and c.server_default is None
        ]
        if unknown:
            raise RuntimeError(f"seeding has no value for users.{', users.'.join(unknown)}")
        columns = [c.name for c in users.columns if c.name in known]
        copy = f"COPY users ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
        libpq_dsn = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
        for start in range(0, total, SEED_BATCH):
            end = min(start + SEED_BATCH, total)
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for index in range(start, end):
                values = row(index)
                writer.writerow([values[name] for name in columns])
            buffer.seek(0)
            loader = psycopg2.connect(libpq_dsn)
            try:
                with loader, loader.cursor() as cursor:  # commits when the block ends
                    cursor.copy_expert(copy, buffer)
            finally:
                loader.close()
            if sys.stdout.isatty() or end == total:
                print(f"\rseeding users: {end}/{total}", end="", flush=True)
        with engine.begin() as connection:
            if inspect(connection).has_table("user_roles"):
                # An app with roles: everyone holds member, the superuser admin as well.
                connection.execute(
                    text(
                        "INSERT INTO user_roles (user_id, role_id) SELECT users.id, roles.id"
                        " FROM users JOIN roles ON roles.name = 'member'"
                        " OR (roles.name = 'admin' AND users.email = :admin)"
                    ),
                    {"admin": superuser.email},
                )
                connection.execute(text("ANALYZE user_roles"))
            connection.execute(text("ANALYZE users"))
    finally:
        engine.dispose()
    print()


class BackendCpu:
    """CPU time of the PostgreSQL backends serving one application name.

    A backend that closes between two readings takes its CPU time with it, so pools that
    open and close overflow connections read a little low.
    """

    def __init__(self, database: BenchDatabase) -> None:
        self._engine = create_engine(database.url, poolclass=NullPool)

    def backend_pids(self, application_name: str) -> list[int]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                {"name": application_name},
            )
            return [int(pid) for (pid,) in rows]

    def dispose(self) -> None:
        self._engine.dispose()
