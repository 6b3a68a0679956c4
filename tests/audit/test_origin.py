"""The client address of an event is the one the server's trusted proxies vouch for: a real
uvicorn process, which (like behind nginx in production) trusts X-Forwarded-For from
127.0.0.1 only (`forwarded-allow-ips`), and so does the audit log."""

from pathlib import Path

import httpx2
from sqlalchemy import create_engine, text

from tests.conftest import DEFAULT_PASSWORD
from tests.support import fresh_database, migrate, run_server

USER_AGENT = "OriginTest/3.1"


def test_an_event_keeps_the_address_the_proxy_forwarded_canonical_or_invalid(
    tmp_path: Path,
) -> None:
    with fresh_database(tmp_path) as url:
        migrate(url)
        with run_server(url, tmp_path) as server:
            for number, forwarded in enumerate(["2001:DB8::0:7", "unknown-host; drop"]):
                response = httpx2.post(
                    f"{server.base_url}/api/v1/auth/register",
                    json={
                        "name": "Proxied",
                        "email": f"proxied-{number}@example.com",
                        "password": DEFAULT_PASSWORD,
                    },
                    headers={"X-Forwarded-For": forwarded, "User-Agent": USER_AGENT},
                    timeout=10,
                )
                assert response.status_code == 201, server.log()
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT type, client_ip, user_agent FROM audit_events ORDER BY created_at")
                ).all()
        finally:
            engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("users.created", "2001:db8::7", USER_AGENT),
        ("users.created", "invalid", USER_AGENT),
    ]
