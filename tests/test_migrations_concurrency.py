"""Replicas that start together all run the migrate step: one applies, the others wait."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg2
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from tests.conftest import ROOT, alembic_config
from tests.support import fresh_postgres_database, postgres_test_url

REPLICAS = 3


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    if not postgres_test_url():
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    with fresh_postgres_database() as url:
        yield url


def test_simultaneous_migrate_steps_do_not_collide(fresh_postgres_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": fresh_postgres_url}
    replicas = [
        subprocess.Popen(
            [sys.executable, "manage.py", "migrate"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    outputs = [replica.communicate(timeout=120)[0] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0] * REPLICAS, outputs
    applied = [out for out in outputs if "Running upgrade" in out]
    assert len(applied) == 1, outputs

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    url = make_url(fresh_postgres_url)
    with (
        psycopg2.connect(
            host=url.host, port=url.port or 5432, user=url.username, dbname=url.database
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT version_num FROM alembic_version")
        assert cursor.fetchall() == [(head,)]
        cursor.execute("SELECT to_regclass('users') IS NOT NULL")
        assert cursor.fetchone() == (True,)


def test_a_migrate_step_gives_up_on_a_lock_it_cannot_get(fresh_postgres_url: str) -> None:
    """While an ALTER waits for a table's lock, every request touching the table queues
    behind it: the step waits at most LOCK_TIMEOUT (migrations/env.py), then fails, to be
    retried, rather than hold the app up for as long as the long query runs."""
    env = {**os.environ, "DATABASE_URL": fresh_postgres_url}
    script = ScriptDirectory.from_config(alembic_config())
    head_id = script.get_current_head()
    assert head_id is not None
    head = script.get_revision(head_id)
    assert head is not None
    assert isinstance(head.down_revision, str)
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", head.down_revision],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    url = make_url(fresh_postgres_url)
    holder = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database
    )
    try:
        with holder.cursor() as cursor:  # a long transaction holding what every step writes
            cursor.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        step = subprocess.run(
            [sys.executable, "manage.py", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert step.returncode != 0
    assert "lock timeout" in step.stdout + step.stderr
    assert waited < 30
