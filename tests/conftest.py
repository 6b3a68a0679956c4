"""Test harness: a real database built by the Alembic migrations, one rolled-back transaction
per test.

PostgreSQL when TEST_DATABASE_URL is set, an embedded SQLite file otherwise. Every session
the app opens joins the test's outer transaction through a SAVEPOINT, so the app's own
commits and rollbacks behave as in production and nothing survives the test.
"""

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlmodel import Session
from starlette.testclient import TestClient

from core import jobs
from core.cache import Cache
from core.config import Settings
from core.data.db import Database, build_engine, changed_rows
from core.http.ratelimit import RateLimiter
from features.users import authority as users_authority
from features.users.models import ADMIN_ROLE, MEMBER_ROLE, User, UserRole
from main import create_app

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
DEFAULT_PASSWORD = "correct-horse-battery"


# The shared Redis the suite runs against when given (CI gives it): the production shape.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """The production configuration for this database, but for what the suite must change:
    each difference is listed here with why it is safe."""
    values: dict[str, Any] = {
        # Production also writes JSON log lines and refuses a weak SECRET_KEY; mails without
        # SMTP_HOST are logged here, dropped there. Nothing else reads ENVIRONMENT.
        "ENVIRONMENT": "test",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "BCRYPT_ROUNDS": 4,  # cheap hashing: the suite checks behaviour, not cost
        # Tests sign in far more often than a person; the limits' own tests set real ones.
        "LOGIN_RATE_LIMIT": "1000/minute",
        "REGISTER_RATE_LIMIT": "1000/minute",
        # Redis as in production when the run has one; each test's app gets a key space of
        # its own (the `app` fixture), so no count or cache entry leaks between tests.
        "REDIS_URL": TEST_REDIS_URL,
        "FIRST_SUPERUSER_EMAIL": "",
        "FIRST_SUPERUSER_PASSWORD": "",
        # JOBS_MODE stays `auto`: on PostgreSQL jobs are enqueued in the request's own
        # transaction, into the real queue, as in production, and `client` runs them from
        # the queue after each response (`run_jobs`); on SQLite they run in-process, which
        # is what runs there. Retries come quickly, for the in-process runner's tests, and
        # one job runs at a time: every job shares the test's one database connection. (So
        # a unit of work reads nothing after its commit: on SQLite its jobs start then, on
        # that same connection.)
        "JOBS_CONCURRENCY": 1,
        "JOBS_RETRY_BASE_SECONDS": 0.05,
        "JOBS_RETRY_MAX_SECONDS": 0.1,
        # Periodic jobs fire by the wall clock, in the middle of whatever test runs then, on
        # its one connection; their own tests turn them on (tests/jobs/test_periodic.py).
        "JOBS_SCHEDULES": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def reset_database(engine: Engine) -> None:
    """Drop everything, so the migrations start from an empty database."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    settings = make_settings(database_url)
    engine = build_engine(database_url, settings)
    reset_database(engine)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def session_factory(connection: Connection) -> Callable[[], Session]:
    def factory() -> Session:
        return Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )

    return factory


@pytest.fixture
def session(session_factory: Callable[[], Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module (or parametrize) to change settings for its app."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict[str, object]) -> Settings:
    return make_settings(database_url, **settings_overrides)


@pytest.fixture
def app(settings: Settings, session_factory: Callable[[], Session]) -> Iterator[FastAPI]:
    app = create_app(settings)
    # A fresh key space per test, so counts and cache entries never leak between tests.
    key_space = f"test-{uuid.uuid4()}"
    app.state.cache = Cache(
        settings.REDIS_URL,
        secret=settings.SECRET_KEY,
        revocable_ttl=settings.CACHE_USER_TTL_SECONDS,
        key_prefix=key_space,
    )
    app.state.database.dispose()  # its engines are replaced by the test's connection
    app.state.database = Database(session_factory, max_threads=4, cache=app.state.cache)
    app.state.rate_limiter = RateLimiter(settings.REDIS_URL, key_prefix=key_space)
    yield app
    app.state.database.dispose()


JOBS_IDLE_TIMEOUT_SECONDS = 30.0


def run_jobs(app: FastAPI) -> None:
    """Run what the app's requests enqueued, as a worker would, before the test goes on: on
    PostgreSQL every due job in the queue, taken and finished through the queue's own SQL
    (`core.jobs.run_due_jobs`; a worker process cannot see the test's transaction); on
    SQLite, the in-process runner's jobs finish. Either way they use the test's one database
    connection, so they are done before the test, or its next request, uses it again."""
    if app.state.jobs is not None:
        assert app.state.jobs.wait_idle(JOBS_IDLE_TIMEOUT_SECONDS), "jobs still running"
        return
    jobs.run_due_jobs(app.state.settings, app.state.database)


def run_every_retry(app: FastAPI, max_rounds: int = 100) -> None:
    """Run the queued jobs and every retry they ask for until none waits: on PostgreSQL the
    waits between tries pass at once (a job's due time is cleared, as if the clock had moved
    on); on SQLite the in-process runner's own short waits pass."""
    run_jobs(app)
    if app.state.jobs is not None:
        return
    for _ in range(max_rounds):
        with app.state.database.session() as session:
            waiting = changed_rows(session, _RETRIES_DUE_NOW)
            session.commit()
        if not waiting:
            return
        run_jobs(app)
    raise AssertionError(f"jobs still retrying after {max_rounds} rounds")


_RETRIES_DUE_NOW = text(
    "UPDATE procrastinate_jobs SET scheduled_at = NULL "
    "WHERE status = 'todo' AND scheduled_at IS NOT NULL"
)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        client.event_hooks = {"response": [lambda _response: run_jobs(app)]}
        yield client


@dataclass
class Account:
    """A user the test created, with what it takes to act as them."""

    user: User
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def id(self) -> str:
        return str(self.user.id)

    @property
    def email(self) -> str:
        return self.user.email


def login(client: TestClient, email: str, password: str) -> dict[str, object]:
    response = client.post("/api/v1/auth/login", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.fixture
def make_account(
    client: TestClient, app: FastAPI, session_factory: Callable[[], Session]
) -> Callable[..., Account]:
    """Create a user straight in the database, then log in through the API."""

    def make(
        *,
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
        name: str = "Test User",
        is_superuser: bool = False,
        is_active: bool = True,
        roles: Sequence[str] = (),
    ) -> Account:
        """`is_superuser`: the account holds `admin`; `roles`: more roles, by name."""
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        hashed = app.state.password_hasher.hash(password)
        held = [MEMBER_ROLE, *([ADMIN_ROLE] if is_superuser else []), *roles]
        with session_factory() as session:
            user = User(
                name=name,
                email=email.lower(),
                hashed_password=hashed,
                is_superuser=is_superuser,
                is_active=True,
            )
            session.add(user)
            session.add_all(
                UserRole(user_id=user.id, role_id=role.id)
                for role in users_authority.roles_named(session, held)
            )
            session.commit()
        tokens = login(client, email, password)
        if not is_active:
            with session_factory() as session:
                stored = session.get(User, user.id)
                assert stored is not None
                stored.is_active = False
                session.add(stored)
                session.commit()
                user = stored
        return Account(
            user=user,
            password=password,
            access_token=str(tokens["access_token"]),
            refresh_token=str(tokens["refresh_token"]),
        )

    return make


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account()


@pytest.fixture
def superuser(make_account: Callable[..., Account]) -> Account:
    return make_account(is_superuser=True, name="Admin")
