"""One live server for the generated clients to talk to: uvicorn on a free port, over a
database of its own (PostgreSQL under TEST_DATABASE_URL, else an SQLite file), migrated and
given its first superuser by `manage.py`, as a deployment would be."""

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import ROOT
from tests.support import fresh_database, migrate, run_server, server_env

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-for-clients"


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    admin_email: str
    admin_password: str


def create_first_superuser(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "superuser"],
        cwd=ROOT,
        env=server_env(
            database_url,
            FIRST_SUPERUSER_EMAIL=ADMIN_EMAIL,
            FIRST_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="package")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    workdir = tmp_path_factory.mktemp("live-api")
    with fresh_database(workdir) as database_url:
        migrate(database_url)
        create_first_superuser(database_url)
        with run_server(database_url, workdir) as server:
            yield LiveApi(server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
