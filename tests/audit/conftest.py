"""The audit tests' client comes from a real address with a User-Agent, as a browser would,
so every event shows where it came from; helpers read the log straight from the table."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from core.data.audit import AuditEvent
from tests.conftest import run_jobs

CLIENT_IP = "203.0.113.7"
USER_AGENT = "AuditTest/1.0 (X11; Linux x86_64)"


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(
        app,
        raise_server_exceptions=False,
        client=(CLIENT_IP, 50000),
        headers={"User-Agent": USER_AGENT},
    ) as client:
        client.event_hooks = {"response": [lambda _response: run_jobs(app)]}
        yield client


Events = Callable[..., list[AuditEvent]]


@pytest.fixture
def events(session_factory: Callable[[], Session]) -> Events:
    """The recorded events, oldest first; `type=` keeps one type."""

    def read(type: str | None = None, subject_id: Any = None) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(col(AuditEvent.created_at), col(AuditEvent.id))
        if type is not None:
            query = query.where(AuditEvent.type == type)
        if subject_id is not None:
            query = query.where(AuditEvent.subject_id == uuid.UUID(str(subject_id)))
        with session_factory() as session:
            return list(session.exec(query))

    return read
