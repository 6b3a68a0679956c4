"""The audit log's writer (core/data/audit.py): what details may hold, where an event comes
from, and a table the database keeps append-only."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text, update
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from core.data import audit
from core.data.audit import AuditEvent
from tests.conftest import DEFAULT_PASSWORD

DECLARED = "auth.signed_in"  # declared by the auth feature, imported with the app


@pytest.mark.parametrize(
    "details",
    [
        {"password": "hunter22"},
        {"new_password": None},
        {"hashed_password": "$2b$04$..."},
        {"refresh_token": "abc"},
        {"Token": "abc"},
        {"client_secret": "abc"},
        {"password_hash": "abc"},
        {"credentials": "abc"},
        {"cookie": "abc"},
        {"nested": {"access_token": "abc"}},
        {"value": b"bytes"},
        {"value": {1, 2}},
        {"value": object()},
        {"value": [["lists", "in"], "lists"]},
        {"value": "x" * (audit.DETAILS_MAX_BYTES + 1)},
    ],
)
def test_details_that_could_hold_a_secret_or_are_no_small_json_are_refused(
    session: Session, details: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="audit details"):
        audit.record(session, DECLARED, actor_id=None, subject_id=None, details=details)
    assert not session.new


def test_a_type_no_feature_declares_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="no feature declares"):
        audit.record(session, "auth.signed_inn", actor_id=None, subject_id=None)


@pytest.mark.parametrize("name", ["Auth.SignedIn", "auth", "auth.signed-in", "a." + "b" * 70])
def test_event_types_are_lower_case_dotted_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"<feature>\.<event>"):
        audit.event_type(name, "whatever")


def test_a_type_declared_twice_with_two_meanings_is_refused() -> None:
    assert audit.event_type("tests.example", "An example") == "tests.example"
    assert audit.event_type("tests.example", "An example") == "tests.example"
    with pytest.raises(ValueError, match="declared twice"):
        audit.event_type("tests.example", "Something else")


def test_every_declared_type_belongs_to_an_installed_feature() -> None:
    from features.registry import INSTALLED_FEATURES

    owners = {name.split(".")[0] for name in audit.declared_event_types()} - {"tests"}
    assert owners <= set(INSTALLED_FEATURES)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("evil.example\r\nX: y", "invalid"),
        ("testclient", "invalid"),
        (None, "unknown"),
    ],
)
def test_addresses_are_canonical_or_a_word(host: str | None, expected: str) -> None:
    assert audit.normalized_ip(host) == expected
    assert len(expected) <= audit.CLIENT_IP_MAX_LENGTH


def test_a_user_agent_is_bounded_and_printable() -> None:
    assert audit.bounded_user_agent(None) is None
    assert audit.bounded_user_agent("   ") is None
    assert audit.bounded_user_agent("Agent\x00/1\n\x1b[31m") == "Agent?/1??[31m"
    assert audit.bounded_user_agent("é" * 1000) == "é" * audit.USER_AGENT_MAX_LENGTH


def test_outside_a_request_an_event_has_no_origin(session: Session) -> None:
    audit.record(session, DECLARED, actor_id=None, subject_id=None, details={"n": 1})
    session.commit()
    (event,) = session.exec(select(AuditEvent)).all()
    assert (event.client_ip, event.user_agent, event.details) == (None, None, {"n": 1})


def test_a_request_origin_reaches_the_unit_of_work_thread_bounded(
    client: TestClient, session: Session
) -> None:
    """The edge sets it once; the unit of work runs on a database thread and still sees it."""
    long_agent = "Agent/9 " + "x" * 2000
    body = {"name": "A", "email": "agent@example.com", "password": DEFAULT_PASSWORD}
    response = client.post(
        "/api/v1/auth/register",
        json=body,
        headers={"User-Agent": long_agent, "X-Forwarded-For": "198.51.100.1"},
    )
    assert response.status_code == 201
    (event,) = session.exec(select(AuditEvent)).all()
    # The test client's peer is `testclient`, no address; X-Forwarded-For counts only through
    # the server's trusted proxies (tests/audit/test_origin.py), never as a header read here.
    assert event.client_ip == "invalid"
    assert event.user_agent == long_agent[: audit.USER_AGENT_MAX_LENGTH]


def test_the_database_refuses_to_change_an_event(
    session_factory: Callable[[], Session],
) -> None:
    with session_factory() as session:
        audit.record(session, DECLARED, actor_id=None, subject_id=None)
        session.commit()
        (event,) = session.exec(select(AuditEvent)).all()
        for statement in (
            update(AuditEvent).values(details={"forged": True}),
            update(AuditEvent)
            .where(col(AuditEvent.id) == event.id)
            .values(subject_id=uuid.uuid4()),
            text("UPDATE audit_events SET type = 'auth.signed_out'"),
        ):
            with pytest.raises(sa_exc.DBAPIError, match="append-only"), session.begin_nested():
                session.execute(statement)
        session.expire_all()
        assert session.exec(select(AuditEvent)).one().details == {}
