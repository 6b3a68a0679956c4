"""Every migration goes down, up and down again over rows, not over an empty database.

The database is migrated to head and filled through the app's own code (sign-ups, sign-ins and
a password recovery over the API; on PostgreSQL a job enqueued into the queue and a worker
registered with the queue's own functions); then, newest migration first, each is undone, done
again and undone again, and every table it did not create keeps its rows. A migration that
fails on rows (a NOT NULL column with nothing to fill it) fails here, on both databases.
"""

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from starlette.testclient import TestClient

from core import jobs
from core.data.db import build_engine
from core.http.ratelimit import RateLimiter
from core.security import PasswordHasher
from features.oidc.models import Identity
from features.recovery import jobs as recovery_jobs
from features.users import service as users_service
from main import create_app
from tests.conftest import DEFAULT_PASSWORD, ROOT, alembic_config, make_settings, run_jobs
from tests.support import fresh_database

# Every table the template's own code writes; seed_through_the_app() fills each. A table a
# team adds joins the list once that function fills it too (until then its migrations still
# run here, over an empty table). The sign-ups and sign-ins fill the audit log, the accounts'
# roles and their sessions; the admin's role and a member's API key fill role_permissions
# and api_keys; a periodic job deferred as a worker defers it fills
# procrastinate_periodic_defers. An account made through an OpenID Connect provider fills
# identities, and has no password.
SEEDED_TABLES = {
    "users",
    "refresh_tokens",
    "account_tokens",
    "row_counts",
    "audit_events",
    "roles",
    "user_roles",
    "role_permissions",
    "sessions",
    "api_keys",
    "identities",
}
SEEDED_QUEUE_TABLES = {
    "procrastinate_jobs",
    "procrastinate_events",
    "procrastinate_workers",
    "procrastinate_periodic_defers",
}
ACCOUNTS = 3
ADMIN_EMAIL = "seed-admin@example.com"
PASSWORDLESS_EMAIL = "seed-provider@example.com"
# The migration that gave every account its roles (add_roles).
ROLES_REVISION = "7a722e6d5ea1"
# The migration that let an account have no password (add_oidc).
OIDC_REVISION = "45ad082fd9dc"
PERIODIC_JOB = "features.audit.jobs.purge_expired_events"


def migrate(engine: Engine, config: Config, direction: str, target: str) -> None:
    """As `manage.py migrate` does: env.py opens its own connection, to this database."""
    config.attributes["url"] = engine.url.render_as_string(hide_password=False)
    getattr(command, direction)(config, target)


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
        return {
            table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()  # noqa: S608
            for table in tables
        }


def sign_in(client: TestClient, email: str) -> dict[str, str]:
    signed_in = client.post(
        "/api/v1/auth/login", data={"username": email, "password": DEFAULT_PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    return {"Authorization": f"Bearer {signed_in.json()['access_token']}"}


def seed_through_the_app(database_url: str, engine: Engine) -> None:
    settings = make_settings(database_url)
    with Session(engine) as session:
        hashed = PasswordHasher(settings.BCRYPT_ROUNDS, concurrency=1).hash(DEFAULT_PASSWORD)
        assert users_service.ensure_first_superuser(session, ADMIN_EMAIL, hashed)
    app = create_app(settings)
    # Limits counted in a key space of this run's own: the shared Redis keeps other runs'.
    app.state.rate_limiter = RateLimiter(settings.REDIS_URL, key_prefix=f"seed-{uuid.uuid4()}")
    try:
        with TestClient(app) as client:
            for number in range(ACCOUNTS):
                email = f"seed-{number}@example.com"
                registered = client.post(
                    "/api/v1/auth/register",
                    json={"name": f"Seed {number}", "email": email, "password": DEFAULT_PASSWORD},
                )
                assert registered.status_code == 201, registered.text
                signed_in = client.post(
                    "/api/v1/auth/login", data={"username": email, "password": DEFAULT_PASSWORD}
                )
                assert signed_in.status_code == 200, signed_in.text
            member = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
            key = client.post("/api/v1/api-keys", headers=member, json={"name": "seed"})
            assert key.status_code == 201, key.text
            role = client.post(
                "/api/v1/roles",
                headers=sign_in(client, ADMIN_EMAIL),
                json={"name": "seed-readers", "permissions": ["users:read"]},
            )
            assert role.status_code == 201, role.text
            recovery = client.post("/api/v1/auth/password-recovery", json={"email": email})
            assert recovery.status_code == 202, recovery.text
            run_jobs(app)  # the verification and recovery links are written by jobs
    finally:
        app.state.database.dispose()
    with Session(engine) as session:
        # As a sign-in through a provider makes it (features/oidc/service.py).
        made = users_service.add_without_password(
            session, name="Seed Provider", email=PASSWORDLESS_EMAIL
        )
        session.add(
            Identity(user_id=made.id, provider="seed", subject="seed-sub", email=made.email)
        )
        session.commit()
    if engine.dialect.name == "postgresql":
        jobs.use_in_process_runner(None)  # into the queue, as production enqueues
        with Session(engine) as session:
            user_id = str(registered.json()["id"])
            jobs.enqueue(session, recovery_jobs.issue_verification, email=email, user_id=user_id)
            session.commit()
        with engine.begin() as connection:
            connection.execute(text("SELECT procrastinate_register_worker_v1()"))
            # What a worker runs when the retention purge is due (procrastinate's own SQL).
            connection.execute(
                text(
                    "SELECT procrastinate_defer_periodic_job_v2('default', NULL, NULL, :task, 0,"
                    " '', CAST(extract(epoch FROM now()) AS bigint), CAST('{}' AS jsonb))"
                ),
                {"task": PERIODIC_JOB},
            )


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Engine]:
    """A database of the test's own at head, with rows in every table."""
    with fresh_database(tmp_path) as url:
        engine = build_engine(url, make_settings(url))
        try:
            migrate(engine, alembic_config(), "upgrade", "head")
            seed_through_the_app(url, engine)
            postgresql = engine.dialect.name == "postgresql"
            seeded = SEEDED_TABLES | (SEEDED_QUEUE_TABLES if postgresql else set())
            counts = row_counts(engine)
            assert {table: counts[table] for table in seeded if not counts[table]} == {}
            yield engine
        finally:
            engine.dispose()


def down_up_down_each(engine: Engine, config: Config) -> list[str]:
    """Newest first: undo each migration, do it again, undo it again, over the rows there.
    The revisions walked, newest first."""
    migrate(engine, config, "upgrade", "head")  # any migration not applied yet, over the rows
    walked = []
    for script in ScriptDirectory.from_config(config).walk_revisions():
        below = script.down_revision or "base"
        assert isinstance(below, str), "the history is linear (tests/test_migrations.py)"
        before = row_counts(engine)
        migrate(engine, config, "downgrade", below)
        kept = row_counts(engine)
        migrate(engine, config, "upgrade", script.revision)
        again = row_counts(engine)
        assert_kept_totals_are_exact(engine, again)
        migrate(engine, config, "downgrade", below)
        # Every table the migration did not create keeps its rows, down and up.
        assert kept == {table: before[table] for table in kept}, script.revision
        assert {table: again[table] for table in kept} == kept, script.revision
        assert set(again) == set(before), script.revision
        walked.append(script.revision)
    return walked


def assert_kept_totals_are_exact(engine: Engine, counts: dict[str, int]) -> None:
    """core/data/row_counts.py's totals match the tables, however often their migration ran."""
    if "row_counts" not in counts:
        return
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT table_name, total FROM row_counts"))
        kept: dict[str, int] = {table: total for table, total in rows}
    assert kept == {table: counts[table] for table in kept}
    assert kept.get("users") == ACCOUNTS + 2  # and the admin, and the one without a password


def test_every_migration_goes_down_up_and_down_over_rows(seeded: Engine) -> None:
    config = alembic_config()
    walked = down_up_down_each(seeded, config)
    history = ScriptDirectory.from_config(config).walk_revisions()
    assert walked == [script.revision for script in history]
    assert row_counts(seeded) == {}  # all the way down: no table left


BREAKS_ON_ROWS = '''"""adds a NOT NULL column with nothing to fill the rows there"""

import sqlalchemy as sa
from alembic import op

revision = "0badc0ffee00"
down_revision = "{head}"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("nickname", sa.String(40), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("nickname")
'''


def test_a_migration_that_breaks_on_rows_fails_here(seeded: Engine, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", migrations, ignore=shutil.ignore_patterns("__pycache__"))
    config = alembic_config()
    config.set_main_option("script_location", str(migrations))
    head = ScriptDirectory.from_config(config).get_current_head()
    (migrations / "versions" / "0badc0ffee00_breaks_on_rows.py").write_text(
        BREAKS_ON_ROWS.format(head=head)
    )
    with pytest.raises(DBAPIError) as failure:
        down_up_down_each(seeded, config)
    # PostgreSQL: NotNullViolation; SQLite: "Cannot add a NOT NULL column with default value NULL".
    assert "null" in str(failure.value.orig).lower()


def test_the_roles_migration_makes_superusers_admins_and_everyone_a_member(
    seeded: Engine,
) -> None:
    """Over accounts from before roles: each keeps exactly the authority it had."""
    config = alembic_config()
    roles = ScriptDirectory.from_config(config).get_revision(ROLES_REVISION)
    assert roles is not None
    assert isinstance(roles.down_revision, str)
    migrate(seeded, config, "downgrade", roles.down_revision)
    migrate(seeded, config, "upgrade", "head")
    with seeded.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT users.email, roles.name FROM user_roles"
                " JOIN users ON users.id = user_roles.user_id"
                " JOIN roles ON roles.id = user_roles.role_id"
            )
        ).all()
    held: dict[str, set[str]] = {}
    for email, role in rows:
        held.setdefault(email, set()).add(role)
    members = {f"seed-{number}@example.com": {"member"} for number in range(ACCOUNTS)}
    assert held == {**members, PASSWORDLESS_EMAIL: {"member"}, ADMIN_EMAIL: {"admin", "member"}}


def password_hashes(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT email, hashed_password FROM users")).all()
    return {email: hashed for email, hashed in rows}


def test_an_account_without_a_password_has_none_again_after_the_oidc_migration_round_trip(
    seeded: Engine,
) -> None:
    """Down, the release before needs a hash on every account (a placeholder no password
    matches); up again, the placeholder goes: the account is password-less, as before."""
    config = alembic_config()
    oidc = ScriptDirectory.from_config(config).get_revision(OIDC_REVISION)
    assert oidc is not None
    assert isinstance(oidc.down_revision, str)
    before = password_hashes(seeded)
    assert before[PASSWORDLESS_EMAIL] is None

    migrate(seeded, config, "downgrade", oidc.down_revision)
    assert password_hashes(seeded)[PASSWORDLESS_EMAIL] is not None
    migrate(seeded, config, "upgrade", "head")

    assert password_hashes(seeded) == before
