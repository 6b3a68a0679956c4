"""No address in clear in any log line, whatever its alphabet or punctuation.

Awkward addresses go through every path a log line can take one: a request's path, a job's
failure (a mail server's refusal quotes the recipient), a mail dropped for want of a server,
a database error quoting the row, and procrastinate's own lines. What the handler writes, in
the production JSON format and the readable one, holds none of them.
"""

import io
import json
import logging
import smtplib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy import text
from starlette.testclient import TestClient

from core import jobs
from core.config import Settings
from core.data.db import build_engine
from core.jobs.mail import Mailer
from core.observability.logging import configure_logging
from core.observability.masking import mask_address, mask_addresses
from tests.conftest import make_settings, run_every_retry
from tests.support import free_port

AWKWARD = [
    "иван.петров@example.com",
    "john.o'reject@example.com",
    '"john doe"@example.com',
    "a+tag@exämple.org",
    "UPPER.Case@EXAMPLE.COM",
    "user@[192.0.2.1]",
    "{weird}=local@example.com",
    "小林@例え.jp",
]
# What may remain of a local part: its first letter (and any punctuation before it).
VISIBLE_PREFIX = 2


def in_clear(address: str, output: str) -> bool:
    """The address, or its local part past the first characters, in the output as written
    or as JSON writes it."""
    local = address.rpartition("@")[0]
    tell = local[VISIBLE_PREFIX:] if len(local) > VISIBLE_PREFIX + 2 else local
    forms = {address, json.dumps(address)[1:-1], tell + "@", json.dumps(tell)[1:-1] + "@"}
    return any(form in output for form in forms)


@pytest.mark.parametrize("address", AWKWARD)
def test_an_address_keeps_only_its_first_letter(address: str) -> None:
    masked = mask_address(address)
    assert masked.endswith("***@" + address.rpartition("@")[2])
    assert not in_clear(address, masked)
    assert not in_clear(address, mask_addresses(f"mail to <{address}> refused: {address!r}"))


def test_text_without_an_address_is_untouched() -> None:
    line = "GET /api/v1/users/me 200 in 1.2 ms; job 42 succeeded"
    assert mask_addresses(line) is line


@pytest.fixture(params=[True, False], ids=["json", "text"])
def log_output(request: pytest.FixtureRequest, app: FastAPI) -> Iterator[io.StringIO]:
    """Everything the app's handler writes, in one of its two formats (set up after the app,
    whose create_app installs the handler)."""
    configure_logging("INFO", json_lines=request.param)
    (handler,) = [h for h in logging.getLogger().handlers if type(h).__name__ == "_AppHandler"]
    buffer = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    configure_logging("INFO", json_lines=False)


def production(database_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, ENVIRONMENT="production", **overrides)


def test_no_log_path_writes_an_address_in_clear(
    log_output: io.StringIO, database_url: str, app: FastAPI
) -> None:
    settings = production(database_url, SMTP_HOST="")
    for address in AWKWARD:
        # A mail dropped for want of a server.
        Mailer.from_settings(settings).deliver(recipient=address, subject="s", text="t", html="h")
        # A job whose mail server refused the recipient, quoting it, retried then given up.
        refusal = smtplib.SMTPRecipientsRefused({address: (550, f"<{address}> unknown".encode())})
        policy = jobs.RetryPolicy(max_attempts=2, base_seconds=1, max_seconds=1)
        policy.after_failure("features.x.send", 7, 1, refusal)
        policy.after_failure("features.x.send", 7, 2, refusal)
        # procrastinate's own line about a job, its arguments in its extra fields.
        logging.getLogger("procrastinate.worker").warning(
            "job %s failed", {"email": address}, extra={"job": {"args": {"email": address}}}
        )
    # A request whose path holds an address (a 422: ids are UUIDs).
    with TestClient(app) as client:
        for address in AWKWARD:
            client.get(f"/api/v1/users/{address}")
    output = log_output.getvalue()
    assert "***@" in output
    for address in AWKWARD:
        assert not in_clear(address, output), address


def test_a_database_error_in_production_logs_neither_parameters_nor_the_address(
    log_output: io.StringIO, database_url: str, tmp_path: Any
) -> None:
    url = database_url if database_url.startswith("postgresql") else f"sqlite:///{tmp_path}/x.db"
    settings = production(url)
    engine = build_engine(url, settings)
    table = f"masking_{uuid.uuid4().hex[:8]}"
    address = AWKWARD[0]
    try:
        with engine.begin() as connection:
            connection.execute(text(f"CREATE TABLE {table} (email varchar(254) UNIQUE)"))
        with engine.connect() as connection:
            insert = text(f"INSERT INTO {table} VALUES (:email)")  # noqa: S608 - our own name
            connection.execute(insert, {"email": address})
            try:
                connection.execute(insert, {"email": address})
            except Exception:
                logging.getLogger("app.errors").exception("unhandled error")
            connection.rollback()
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    output = log_output.getvalue()
    assert "IntegrityError" in output or "UniqueViolation" in output
    assert "parameters hidden" in output
    assert not in_clear(address, output)


class RefusingServer:
    """An SMTP server that refuses every recipient, quoting the address back."""

    async def handle_RCPT(  # noqa: N802
        self, _server: Any, _session: Any, _envelope: Any, address: str, _options: Any
    ) -> str:
        return f"550 <{address}> no such user here"


@pytest.fixture
def refusing_smtp() -> Iterator[int]:
    port = free_port()
    controller = Controller(RefusingServer(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


@pytest.fixture
def settings_overrides(refusing_smtp: int) -> dict[str, object]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": refusing_smtp,
        "SMTP_STARTTLS": False,
        "JOBS_MAX_ATTEMPTS": 2,
    }


def test_a_refused_recovery_mail_logs_the_recipient_masked(
    log_output: io.StringIO, app: FastAPI, client: TestClient
) -> None:
    address = AWKWARD[0]
    registered = client.post(
        "/api/v1/auth/register",
        json={"name": "Иван", "email": address, "password": "a-long-password"},
    )
    assert registered.status_code == 201, registered.text
    assert client.post("/api/v1/auth/password-recovery", json={"email": address}).status_code == 202
    run_every_retry(app)
    output = log_output.getvalue()
    assert "failed for good after 2 attempts" in output
    assert "not delivered: SMTPRecipientsRefused" in output
    assert not in_clear(address, output)
