"""DATABASE_READ_URL: read-only routes read from the replica, everything else from the primary,
and so do the reads that fill the cache (a replica's lag must not be stored as current).

Two separate SQLite databases stand in for primary and replica, each migrated; the replica
holds a user the primary does not, so a response shows which database answered.
"""

import uuid
from pathlib import Path

from starlette.testclient import TestClient

from core.data.db import Database
from features.users import service as users_service
from features.users.models import User, UserCreate
from main import create_app
from tests.conftest import make_settings
from tests.support import migrate


def migrated_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    migrate(url)
    return url


def test_read_routes_use_the_replica_and_writes_the_primary(tmp_path: Path) -> None:
    primary_url = migrated_sqlite(tmp_path / "primary.db")
    replica_url = migrated_sqlite(tmp_path / "replica.db")
    settings = make_settings(primary_url, DATABASE_READ_URL=replica_url)
    app = create_app(settings)
    database: Database = app.state.database
    hashed = app.state.password_hasher.hash("admin-password")
    with database.session() as session:
        admin = UserCreate(
            name="Admin", email="admin@example.com", password="admin-password", is_superuser=True
        )
        users_service.add(session, admin, hashed)
        session.commit()
    with database.session(read_only=True) as session:
        replica_only = User(
            name="Replica", email="only-on-replica@example.com", hashed_password="x"
        )
        session.add(replica_only)
        session.commit()
        replica_only_id = replica_only.id

    with TestClient(app) as client:
        token = client.post(
            "/api/v1/auth/login",
            data={"username": "admin@example.com", "password": "admin-password"},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        read = client.get(f"/api/v1/users/{replica_only_id}", headers=headers)
        assert read.status_code == 200, read.text
        # The list is cached: what fills the cache is read on the primary.
        listed = client.get("/api/v1/users", headers=headers).json()
        assert [user["email"] for user in listed["items"]] == ["admin@example.com"]
        # Authentication and writes stay on the primary.
        assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        created = client.post(
            "/api/v1/users",
            headers=headers,
            json={"name": "New", "email": "new@example.com", "password": "password-123"},
        )
        assert created.status_code == 201
    with database.session() as session:
        assert session.get(User, uuid.UUID(created.json()["id"])) is not None
    database.dispose()


def test_without_a_read_url_reads_share_the_primary_engine(tmp_path: Path) -> None:
    database = Database.from_settings(make_settings(f"sqlite:///{tmp_path / 'one.db'}"))
    with database.session() as write, database.session(read_only=True) as read:
        assert write.get_bind() is read.get_bind()
    database.dispose()
