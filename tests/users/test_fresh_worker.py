"""A worker's very first request may be an authenticated one, before any other query has
run in the process. In-process tests cannot show that (earlier tests warm the ORM up), so
this runs one request in a fresh interpreter."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT
from tests.support import migrate

FIRST_REQUEST = textwrap.dedent(
    """
    import sqlite3, sys, uuid
    from datetime import timedelta
    from starlette.testclient import TestClient
    from core.security import create_access_token
    import main

    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    with sqlite3.connect(sys.argv[1]) as db:
        db.execute(
            "INSERT INTO users (id, name, email, hashed_password, is_active, is_superuser,"
            " is_verified, token_version, created_at, updated_at)"
            " VALUES (?, 'First', 'first@example.com', 'x', 1, 0, 0, 0,"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            (user_id.hex,),
        )
        db.execute(
            "INSERT INTO sessions (id, user_id, token_version, created_at, last_used_at,"
            " expires_at) VALUES (?, ?, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
            " '2999-01-01 00:00:00')",
            (session_id.hex, user_id.hex),
        )
    token = create_access_token(
        subject=str(user_id), token_version=0, session_id=str(session_id),
        secret_key=main.app.state.settings.SECRET_KEY, expires_in=timedelta(minutes=5),
    )
    response = TestClient(main.app).get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    print(response.status_code, response.json().get("email"))
    """
)


def test_the_first_request_of_a_fresh_worker_can_be_users_me(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "ENVIRONMENT": "test",
        "SECRET_KEY": "fresh-worker-secret-key-0123456789abcdef",
    }
    migrate(env["DATABASE_URL"])
    result = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, str(database)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split()[-2:] == ["200", "first@example.com"], result.stderr[-2000:]
