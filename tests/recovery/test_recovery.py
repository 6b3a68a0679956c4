"""Password recovery against a real SMTP server (aiosmtpd on localhost)."""

import email
import email.policy
import logging
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlmodel import Session, select
from starlette.testclient import TestClient
from starlette.types import Message

from core.data.clock import as_utc, utc_now
from core.security import digest_token
from features.recovery import service as recovery
from features.recovery.errors import InvalidAccountToken
from features.recovery.models import AccountToken, AccountTokenPurpose
from tests.conftest import Account, run_every_retry, run_jobs
from tests.support import free_port

RECOVERY = "/api/v1/auth/password-recovery"
RESET = "/api/v1/auth/reset-password"
ME = "/api/v1/users/me"
SENDER = "Accounts <accounts@example.com>"
PROJECT = "Recovery Test Project"
FRONTEND = "https://app.example.com"
NEW_PASSWORD = "a-brand-new-password"
BAD_LINK = {"detail": "Invalid or expired link"}
# Headers that differ between any two responses, whatever they answer.
PER_RESPONSE_HEADERS = {"date", "x-request-id"}


# --- a real SMTP server ------------------------------------------------------------------


@dataclass
class Inbox:
    """What the SMTP server received, parsed."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        """Bounded poll: the TestClient runs background tasks before it returns, but the
        server thread may still be storing the message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} mail(s), got {len(self.messages)}")

    def sent_to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [message for message in self.messages if message["To"] == address]


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[Inbox]:
    inbox = Inbox(port=free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def inbox(smtp_server: Inbox) -> Inbox:
    with smtp_server.lock:
        smtp_server.messages.clear()
    return smtp_server


@pytest.fixture
def extra_settings() -> dict[str, object]:
    """Parametrize this to change a setting on top of the mail ones."""
    return {}


@pytest.fixture
def settings_overrides(inbox: Inbox, extra_settings: dict[str, object]) -> dict[str, object]:
    return {
        "PROJECT_NAME": PROJECT,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": inbox.port,
        "SMTP_STARTTLS": False,
        "EMAILS_FROM": SENDER,
        "FRONTEND_URL": FRONTEND,
        "RECOVERY_RATE_LIMIT": "1000/hour",
        "JOBS_MAX_ATTEMPTS": 3,
        **extra_settings,
    }


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert isinstance(text_part, EmailMessage)
    assert isinstance(html_part, EmailMessage)
    return str(text_part.get_content()), str(html_part.get_content())


def link_token(message: EmailMessage, page: str) -> str:
    """The token of the one link to `page`, after checking both parts carry that link."""
    text, html = text_and_html(message)
    pattern = re.escape(f"{FRONTEND}/{page}?token=") + r"([A-Za-z0-9_\-]+)"
    in_text, in_html = re.findall(pattern, text), re.findall(pattern, html)
    assert len(in_text) == 1, text
    assert in_html == in_text, html
    token: str = in_text[0]
    return token


def request_reset_token(client: TestClient, inbox: Inbox, address: str) -> str:
    before = len(inbox.messages)
    assert client.post(RECOVERY, json={"email": address}).status_code == 202
    message = inbox.wait_for(before + 1)[-1]
    assert message["To"] == address
    return link_token(message, "reset-password")


def login_status(client: TestClient, address: str, password: str) -> int:
    response = client.post("/api/v1/auth/login", data={"username": address, "password": password})
    return response.status_code


# --- the flows ---------------------------------------------------------------------------


class TestPasswordRecovery:
    def test_the_mailed_link_resets_the_password_once_and_ends_every_session(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        response = client.post(RECOVERY, json={"email": account.email.upper()})
        assert response.status_code == 202

        (message,) = inbox.wait_for(1)
        assert message["From"] == SENDER
        assert message["To"] == account.email
        assert PROJECT in message["Subject"]
        assert message.get_content_type() == "multipart/alternative"
        token = link_token(message, "reset-password")
        assert account.password not in message.as_string()

        reset = client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        assert reset.status_code == 204
        again = client.post(RESET, json={"token": token, "new_password": "yet-another-one"})
        assert (again.status_code, again.json()) == (400, BAD_LINK)

        assert login_status(client, account.email, account.password) == 401
        assert login_status(client, account.email, NEW_PASSWORD) == 200
        assert client.get(ME, headers=account.headers).status_code == 401
        refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert refresh.status_code == 401

    def test_an_unknown_address_gets_the_same_answer_and_no_mail(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        unknown = client.post(RECOVERY, json={"email": "nobody-here@example.com"})
        known = client.post(RECOVERY, json={"email": account.email})

        def visible(headers: Any) -> dict[str, str]:
            return {k: v for k, v in headers.items() if k.lower() not in PER_RESPONSE_HEADERS}

        assert unknown.status_code == known.status_code == 202
        assert unknown.content == known.content
        assert visible(unknown.headers) == visible(known.headers)
        (message,) = inbox.wait_for(1)
        assert message["To"] == account.email
        time.sleep(0.2)  # a stray mail for the unknown address would have arrived by now
        assert len(inbox.messages) == 1

    def test_an_inactive_account_gets_no_mail(
        self, client: TestClient, inbox: Inbox, make_account: Callable[..., Account]
    ) -> None:
        inactive = make_account(is_active=False)
        assert client.post(RECOVERY, json={"email": inactive.email}).status_code == 202
        time.sleep(0.2)
        assert inbox.messages == []

    @pytest.mark.parametrize("extra_settings", [{"PASSWORD_RESET_EXPIRE_MINUTES": 1.5}])
    def test_an_expired_link_is_400_and_changes_nothing(
        self, client: TestClient, inbox: Inbox, account: Account, session: Session
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        stored = session.exec(
            select(AccountToken).where(AccountToken.token_hash == digest_token(token))
        ).one()
        # The link lives as long as the setting says (fractions of a minute included)...
        lifetime = as_utc(stored.expires_at) - as_utc(stored.created_at)
        assert abs(lifetime - timedelta(seconds=90)) < timedelta(seconds=1)
        # ...and is refused once that has passed. The clock is moved on in the database, not
        # slept through: a link short enough to sleep through could expire before its mail.
        stored.expires_at = utc_now() - timedelta(seconds=1)
        session.add(stored)
        session.commit()
        response = client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        assert (response.status_code, response.json()) == (400, BAD_LINK)
        assert login_status(client, account.email, account.password) == 200

    def test_changing_the_password_kills_an_outstanding_link(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        change = client.post(
            "/api/v1/users/me/password",
            headers=account.headers,
            json={"current_password": account.password, "new_password": "changed-in-between"},
        )
        assert change.status_code == 204
        response = client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        assert (response.status_code, response.json()) == (400, BAD_LINK)
        assert login_status(client, account.email, "changed-in-between") == 200

    def test_an_admin_password_change_kills_an_outstanding_link(
        self, client: TestClient, inbox: Inbox, account: Account, superuser: Account
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        client.patch(
            f"/api/v1/users/{account.id}",
            headers=superuser.headers,
            json={"password": "set-by-the-admin"},
        )
        response = client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        assert response.status_code == 400

    def test_using_one_link_kills_the_others_sent_before(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        first = request_reset_token(client, inbox, account.email)
        second = request_reset_token(client, inbox, account.email)
        assert client.post(RESET, json={"token": second, "new_password": NEW_PASSWORD}).is_success
        response = client.post(RESET, json={"token": first, "new_password": "another-password"})
        assert response.status_code == 400

    def test_tampered_unknown_and_wrong_kind_tokens_get_one_answer(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
        answers = []
        for candidate in (tampered, "never-issued", "x" * 512):
            response = client.post(RESET, json={"token": candidate, "new_password": NEW_PASSWORD})
            answers.append((response.status_code, response.json()))
        assert answers == [(400, BAD_LINK)] * 3
        # None of those burnt the real link.
        assert client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD}).is_success

    def test_the_new_password_follows_the_usual_rules(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        for weak in ("short", "€" * 25):
            response = client.post(RESET, json={"token": token, "new_password": weak})
            assert response.status_code == 422, weak
            assert weak not in response.text
        assert client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD}).is_success

    def test_a_reset_marks_the_address_as_verified(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        headers = {
            "Authorization": "Bearer "
            + client.post(
                "/api/v1/auth/login", data={"username": account.email, "password": NEW_PASSWORD}
            ).json()["access_token"]
        }
        assert client.get(ME, headers=headers).json()["is_verified"] is True

    def test_a_link_spent_by_a_racing_request_is_refused(
        self, client: TestClient, inbox: Inbox, account: Account, session: Session
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        # Both requests read the token as unused; only one UPDATE may win.
        stale = recovery._usable(session, token, AccountTokenPurpose.RESET)
        recovery.complete_reset.in_session(
            session, token=token, hashed_password="hash-from-the-winner"
        )
        with pytest.raises(InvalidAccountToken):
            recovery._spend(session, stale)
        stored = session.get(AccountToken, stale.id)
        assert stored is not None
        assert stored.used_at is not None


class TestMailFailures:
    @pytest.mark.parametrize("extra_settings", [{"SMTP_PORT": free_port()}])
    def test_a_dead_smtp_server_still_gets_202_and_the_job_retries_then_logs_no_address(
        self,
        app: FastAPI,
        client: TestClient,
        account: Account,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        with caplog.at_level(logging.INFO, logger="app"):
            response = client.post(RECOVERY, json={"email": account.email})
            run_every_retry(app)
        assert response.status_code == 202
        job_lines = [r for r in caplog.records if r.name == "app.jobs"]
        retried = [r for r in job_lines if r.levelno == logging.WARNING]
        gave_up = [r for r in job_lines if r.levelno == logging.ERROR]
        # The lookup job succeeded; the mail job tried JOBS_MAX_ATTEMPTS (3) times. Each
        # failure says whose mail it was (masked) and why; on the queue, which job to retry.
        assert len(retried) == 2
        assert len(gave_up) == 1
        masked = f"mail to {account.email[0]}***@example.com not delivered: ConnectionRefused"
        for line in (*retried, *gave_up):
            assert "send_account_link" in line.getMessage()
            assert masked in line.getMessage()
        if app.state.jobs is None:  # the queue: the id that `manage.py jobs retry` takes
            job_id = gave_up[0].job_id  # type: ignore[attr-defined]
            assert f"job {job_id} " in retried[0].getMessage()
            assert f"python manage.py jobs retry {job_id}" in gave_up[0].getMessage()
        assert account.email not in caplog.text

    @pytest.mark.parametrize("extra_settings", [{"SMTP_HOST": ""}])
    def test_without_smtp_host_mails_go_to_the_log_with_one_warning_at_start(
        self, client: TestClient, account: Account, caplog: pytest.LogCaptureFixture
    ) -> None:
        warnings = [r for r in caplog.get_records("setup") if r.name == "app.mail"]
        assert [r.levelno for r in warnings] == [logging.WARNING]
        assert "SMTP_HOST" in warnings[0].getMessage()
        with caplog.at_level(logging.INFO, logger="app.mail"):
            assert client.post(RECOVERY, json={"email": account.email}).status_code == 202
        assert f"{FRONTEND}/reset-password?token=" in caplog.text

    @pytest.mark.parametrize("extra_settings", [{"SMTP_HOST": "", "ENVIRONMENT": "production"}])
    def test_production_without_smtp_host_never_logs_a_live_link(
        self, client: TestClient, account: Account, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.DEBUG):
            assert client.post(RECOVERY, json={"email": account.email}).status_code == 202
        assert "token=" not in caplog.text
        assert account.email not in caplog.text
        assert account.email[0] + "***@example.com" in caplog.text


@pytest.mark.parametrize("extra_settings", [{"RECOVERY_RATE_LIMIT": "2/hour"}])
class TestRecoveryRateLimit:
    def test_third_request_for_one_address_is_429(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        for _ in range(2):
            assert client.post(RECOVERY, json={"email": account.email}).status_code == 202
        response = client.post(RECOVERY, json={"email": account.email.upper()})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert len(inbox.wait_for(2)) == 2

    def test_one_client_ip_is_limited_across_addresses(self, client: TestClient) -> None:
        for index in range(2):
            response = client.post(RECOVERY, json={"email": f"someone{index}@example.com"})
            assert response.status_code == 202
        response = client.post(RECOVERY, json={"email": "someone-else@example.com"})
        assert response.status_code == 429


# --- response time, known vs unknown address -----------------------------------------------


async def time_until_response(app: FastAPI, path: str, body: bytes) -> tuple[int, float]:
    """Seconds until the last byte of the response is sent, with the mail job left out: an
    HTTP client sees the response then, while the job runs elsewhere."""
    started = time.perf_counter()
    answered_at = 0.0
    status = 0
    delivered = anyio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await delivered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal answered_at, status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            answered_at = time.perf_counter()
            delivered.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return status, answered_at - started


@pytest.mark.parametrize("extra_settings", [{"RECOVERY_RATE_LIMIT": "1000/minute"}])
def test_report_recovery_response_time_for_known_and_unknown_addresses(
    client: TestClient,
    app: FastAPI,
    inbox: Inbox,
    account: Account,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Prints the medians; the numbers are for the report, never asserted."""
    rounds = 20
    portal = client.portal
    assert portal is not None
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for index in range(rounds):
        for kind, address in (("known", account.email), ("unknown", f"ghost{index}@example.com")):
            body = f'{{"email": "{address}"}}'.encode()
            status, seconds = portal.call(time_until_response, app, RECOVERY, body)
            assert status == 202
            run_jobs(app)
            timings[kind].append(seconds)
    assert len(inbox.wait_for(rounds)) == rounds  # only the known address got mail
    known, unknown = (statistics.median(timings[k]) * 1000 for k in ("known", "unknown"))
    with capsys.disabled():
        print(
            f"\npassword-recovery response time, median of {rounds}: "
            f"known {known:.2f} ms, unknown {unknown:.2f} ms"
        )
