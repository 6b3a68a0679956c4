"""The database goes away and comes back while the app keeps running.

The shared PostgreSQL server is not touched: the app reaches it through a small TCP proxy
owned by the test, and "the database is down" means the proxy stops listening and cuts every
connection it carries.
"""

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx2
import pytest
from sqlalchemy.engine import make_url

from tests.hardening.conftest import register_and_login
from tests.support import (
    LiveServer,
    TcpProxy,
    fresh_database,
    migrate,
    requires_postgres,
    run_server,
)

pytestmark = requires_postgres

CLIENT_TIMEOUT_SECONDS = 15.0
DETECTION_DEADLINE_SECONDS = 10.0
RECOVERY_DEADLINE_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.1


@dataclass
class Traffic:
    """GET /users/me in a loop from a background thread: what a steady client saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    slowest: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


def keep_requesting(server: LiveServer, headers: dict[str, str], traffic: Traffic) -> None:
    with httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        while not traffic.stop.is_set():
            started = time.monotonic()
            try:
                status = client.get(f"{server.base_url}/api/v1/users/me", headers=headers)
                traffic.statuses[status.status_code] += 1
            except httpx2.HTTPError:
                traffic.statuses[0] += 1  # a timeout or a dropped connection: a lost request
            traffic.slowest = max(traffic.slowest, time.monotonic() - started)
            time.sleep(0.05)


def wait_for(check: Callable[[], bool], deadline_seconds: float) -> float:
    """Seconds until `check()` held; fails the test at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_seconds:
        if check():
            return time.monotonic() - started
        time.sleep(POLL_INTERVAL_SECONDS)
    pytest.fail(f"condition not met within {deadline_seconds} s")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, TcpProxy]]:
    tmp_path = tmp_path_factory.mktemp("resilience")
    with fresh_database(tmp_path) as database_url:
        migrate(database_url)
        url = make_url(database_url)
        proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
        proxy.start()
        via_proxy = url.set(host="127.0.0.1", port=proxy.port)
        try:
            with run_server(
                via_proxy.render_as_string(hide_password=False),
                tmp_path,
                DATABASE_POOL_SIZE="5",
                DATABASE_CONNECT_TIMEOUT="2",
                # The bound on one unit of database work proposed for core/data/db.py; ignored
                # until that setting exists.
                DATABASE_WORK_TIMEOUT="3",
            ) as server:
                try:
                    yield server, proxy
                finally:
                    # Cut first, so no server thread is left waiting on a frozen connection.
                    proxy.stop()
        finally:
            proxy.stop()


def test_outage_gives_503_and_the_app_recovers_without_restart(
    proxied: tuple[LiveServer, TcpProxy],
) -> None:
    server, proxy = proxied
    base = server.base_url
    with httpx2.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        email_headers = register_and_login(base, client)
        assert client.get(f"{base}/health/ready").status_code == 200
        me = client.get(f"{base}/api/v1/users/me", headers=email_headers)
        assert me.status_code == 200
        email = me.json()["email"]

        traffic = Traffic()
        background = threading.Thread(
            target=keep_requesting, args=(server, email_headers, traffic), daemon=True
        )
        background.start()
        time.sleep(0.3)

        proxy.stop()
        detection = wait_for(
            lambda: client.get(f"{base}/health/ready").status_code == 503,
            DETECTION_DEADLINE_SECONDS,
        )
        ready = client.get(f"{base}/health/ready")
        assert ready.json() == {
            "status": "unavailable",
            "database": "unavailable",
            "redis": "not configured",
        }
        assert client.get(f"{base}/health").status_code == 200

        timings: dict[str, float] = {}
        during_outage: dict[str, Callable[[], httpx2.Response]] = {
            "GET /users/me": lambda: client.get(f"{base}/api/v1/users/me", headers=email_headers),
            "POST /auth/login": lambda: client.post(
                f"{base}/api/v1/auth/login", data={"username": email, "password": "whatever-pw"}
            ),
            "POST /auth/register": lambda: client.post(
                f"{base}/api/v1/auth/register",
                json={"name": "N", "email": "outage@example.com", "password": "outage-pw"},
            ),
        }
        for label, send in during_outage.items():
            started = time.monotonic()
            response = send()
            timings[label] = time.monotonic() - started
            assert response.status_code == 503, (label, response.text)
            assert response.json()["detail"] == "Service temporarily unavailable"
            if label == "POST /auth/login":  # the token endpoint: RFC 6749's fields beside it
                assert response.json()["error"] == "temporarily_unavailable"

        time.sleep(0.5)
        proxy.start()
        recovery = wait_for(
            lambda: client.get(f"{base}/health/ready").status_code == 200,
            RECOVERY_DEADLINE_SECONDS,
        )
        assert client.get(f"{base}/api/v1/users/me", headers=email_headers).status_code == 200
        time.sleep(0.3)
        traffic.stop.set()
        background.join(timeout=CLIENT_TIMEOUT_SECONDS + 1)

    print(
        f"\noutage detected by /health/ready in {detection:.2f} s; API answers during the "
        + ", ".join(f"{label} {seconds * 1000:.0f} ms" for label, seconds in timings.items())
        + f"; recovered in {recovery:.2f} s after the database came back; steady client saw "
        f"{dict(traffic.statuses)} (0 = lost), slowest {traffic.slowest * 1000:.0f} ms"
    )
    assert set(traffic.statuses) <= {200, 503}, traffic.statuses
    assert traffic.statuses[200] > 0
    assert traffic.statuses[503] > 0
    assert traffic.slowest < CLIENT_TIMEOUT_SECONDS
    assert "Traceback" not in server.log()


HANG_CLIENT_TIMEOUT_SECONDS = 8.0


def test_a_hanging_database_gives_503_not_a_hang(proxied: tuple[LiveServer, TcpProxy]) -> None:
    """Runs after the outage test, on the same (recovered) server."""
    server, proxy = proxied
    base = server.base_url
    with httpx2.Client(timeout=HANG_CLIENT_TIMEOUT_SECONDS) as client:
        headers = register_and_login(base, client)
        assert client.get(f"{base}/api/v1/users/me", headers=headers).status_code == 200
        proxy.freeze()
        outcomes: dict[str, str] = {}
        for label, path in (
            ("GET /users/me", "/api/v1/users/me"),
            ("/health/ready", "/health/ready"),
        ):
            started = time.monotonic()
            try:
                status = str(client.get(f"{base}{path}", headers=headers).status_code)
            except httpx2.TimeoutException:
                status = "no answer"
            outcomes[label] = f"{status} after {time.monotonic() - started:.1f} s"
    print(f"\nfrozen database: {outcomes}")
    assert all(outcome.startswith("503") for outcome in outcomes.values()), outcomes
