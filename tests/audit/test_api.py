"""GET /api/v1/audit-events: only for audit:read, newest first, every event once across
pages, filters that combine, bounded inputs, and no way to change the log."""

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlmodel import Session
from starlette.testclient import TestClient

from core.data.audit import AuditEvent
from core.data.clock import utc_now
from core.data.pagination import encode_cursor
from features.users.models import Role, RolePermission
from tests.conftest import Account

EVENTS = "/api/v1/audit-events"
BASE = datetime(2026, 6, 1, 12, 0, tzinfo=utc_now().tzinfo)


@pytest.fixture
def auditor(
    make_account: Callable[..., Account], session_factory: Callable[[], Session]
) -> Account:
    """A holder of a custom role that grants audit:read and nothing else."""
    with session_factory() as session:
        role = Role(name="auditor", description="Reads the audit log")
        session.add(role)
        session.add(RolePermission(role_id=role.id, permission="audit:read"))
        session.commit()
    return make_account(roles=["auditor"])


def add_events(session_factory: Callable[[], Session], *events: AuditEvent) -> None:
    with session_factory() as session:
        session.add_all(events)
        session.commit()


def event(minutes: float, type: str = "auth.signed_in", **fields: Any) -> AuditEvent:
    return AuditEvent(created_at=BASE + timedelta(minutes=minutes), type=type, **fields)


def walk(client: TestClient, account: Account, limit: int, **filters: Any) -> list[dict[str, Any]]:
    """Every page, following next_cursor, each item once."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit, **filters}
    for _ in range(1000):
        response = client.get(EVENTS, params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]
    raise AssertionError("the pages never ended")


class TestWhoMayRead:
    def test_a_member_is_403_and_nobody_signed_in_is_401(
        self, client: TestClient, account: Account
    ) -> None:
        assert client.get(EVENTS, headers=account.headers).status_code == 403
        anonymous = client.get(EVENTS)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"

    def test_a_custom_role_with_audit_read_reads_it_and_so_does_admin(
        self, client: TestClient, auditor: Account, superuser: Account
    ) -> None:
        for reader in (auditor, superuser):
            response = client.get(EVENTS, headers=reader.headers)
            assert response.status_code == 200, response.text
            types = {item["type"] for item in response.json()["items"]}
            assert "auth.signed_in" in types  # the readers' own sign-ins

    def test_an_api_key_that_holds_audit_read_reads_it_and_one_that_does_not_is_403(
        self, client: TestClient, auditor: Account
    ) -> None:
        def key(permissions: list[str]) -> dict[str, str]:
            made = client.post(
                "/api/v1/api-keys",
                json={"name": f"key {len(permissions)}", "permissions": permissions},
                headers=auditor.headers,
            )
            assert made.status_code == 201, made.text
            return {"Authorization": f"Bearer {made.json()['key']}"}

        with_it = client.get(EVENTS, headers=key(["audit:read"]))
        without = client.get(EVENTS, headers=key([]))
        assert (with_it.status_code, without.status_code) == (200, 403)

    def test_the_published_contract_requires_audit_read(self, app: FastAPI) -> None:
        operation = app.openapi()["paths"][EVENTS]["get"]
        # With a session's access token or an API key that holds it.
        assert operation["security"] == [
            {"OAuth2PasswordBearer": ["audit:read"]},
            {"APIKey": ["audit:read"]},
        ]
        assert {"401", "403", "304", "422"} <= set(operation["responses"])

    def test_the_answer_is_private_and_conditional(
        self, client: TestClient, auditor: Account
    ) -> None:
        first = client.get(EVENTS, headers=auditor.headers)
        assert first.headers["cache-control"] == "private, no-cache"
        again = client.get(
            EVENTS, headers={**auditor.headers, "If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304


class TestPages:
    def test_newest_first_and_every_event_exactly_once_across_pages(
        self,
        client: TestClient,
        auditor: Account,
        session_factory: Callable[[], Session],
    ) -> None:
        # Ties on the time are ordered by id, so no event is skipped or repeated at a page's
        # edge even when many share a moment.
        added = [event(minutes=number // 3) for number in range(23)]
        add_events(session_factory, *added)
        until = (BASE + timedelta(hours=1)).isoformat()
        for limit in (1, 2, 5, 100):
            walked = walk(client, auditor, limit, until=until)
            assert len(walked) == 23
            assert {item["id"] for item in walked} == {str(e.id) for e in added}
            order = [(item["created_at"], item["id"]) for item in walked]
            assert order == sorted(order, reverse=True)

    def test_an_event_recorded_while_walking_is_not_repeated_and_skips_nothing(
        self, client: TestClient, auditor: Account, session_factory: Callable[[], Session]
    ) -> None:
        add_events(session_factory, *(event(minutes=n) for n in range(6)))
        until = (BASE + timedelta(hours=1)).isoformat()
        first = client.get(EVENTS, params={"limit": 3, "until": until}, headers=auditor.headers)
        add_events(session_factory, event(minutes=10))  # newer than everything: page 0
        rest = client.get(
            EVENTS,
            params={"limit": 3, "until": until, "cursor": first.json()["next_cursor"]},
            headers=auditor.headers,
        )
        minutes = [
            item["created_at"][14:16] for item in first.json()["items"] + rest.json()["items"]
        ]
        assert minutes == ["05", "04", "03", "02", "01", "00"]


class TestFilters:
    def test_type_actor_subject_and_time_range_combine(
        self, client: TestClient, auditor: Account, session_factory: Callable[[], Session]
    ) -> None:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        events = {
            "a": event(0, "users.updated", actor_id=alice, subject_id=bob),
            "b": event(1, "users.updated", actor_id=bob, subject_id=bob),
            "c": event(2, "users.deleted", actor_id=alice, subject_id=alice),
            "d": event(3, "users.updated", actor_id=alice, subject_id=alice),
            "e": event(4, "auth.sign_in_failed"),
        }
        add_events(session_factory, *events.values())
        names = {str(e.id): name for name, e in events.items()}
        window = {"since": BASE.isoformat(), "until": (BASE + timedelta(minutes=5)).isoformat()}

        def found(**filters: Any) -> list[str]:
            return [names[item["id"]] for item in walk(client, auditor, 2, **window, **filters)]

        assert found() == ["e", "d", "c", "b", "a"]
        assert found(type="users.updated") == ["d", "b", "a"]
        assert found(actor_id=str(alice)) == ["d", "c", "a"]
        assert found(subject_id=str(bob)) == ["b", "a"]
        assert found(type="users.updated", actor_id=str(alice), subject_id=str(alice)) == ["d"]
        assert found(type="auth.signed_out") == []
        # since is inclusive, until exclusive; a time in another zone means the same instant.
        one_minute = (BASE + timedelta(minutes=1)).astimezone().isoformat()
        three_minutes = (BASE + timedelta(minutes=3)).isoformat()
        params: dict[str, str | int] = {"since": one_minute, "until": three_minutes, "limit": 100}
        response = client.get(EVENTS, params=params, headers=auditor.headers)
        assert [names[item["id"]] for item in response.json()["items"]] == ["c", "b"]

    def test_an_item_shows_every_field(
        self, client: TestClient, auditor: Account, session_factory: Callable[[], Session]
    ) -> None:
        actor, subject = uuid.uuid4(), uuid.uuid4()
        recorded = event(
            0,
            "users.updated",
            actor_id=actor,
            subject_id=subject,
            client_ip="2001:db8::1",
            user_agent="Agent/2",
            details={"fields": ["name"]},
        )
        add_events(session_factory, recorded)
        response = client.get(EVENTS, params={"subject_id": str(subject)}, headers=auditor.headers)
        assert response.json() == {
            "items": [
                {
                    "id": str(recorded.id),
                    "created_at": "2026-06-01T12:00:00Z",
                    "type": "users.updated",
                    "actor_id": str(actor),
                    "subject_id": str(subject),
                    "client_ip": "2001:db8::1",
                    "user_agent": "Agent/2",
                    "details": {"fields": ["name"]},
                }
            ],
            "next_cursor": None,
        }


@pytest.mark.parametrize(
    "params",
    [
        {"type": "Users.Updated"},
        {"type": "users"},
        {"type": "users.updated; drop table"},
        {"type": "a." + "b" * 70},
        {"actor_id": "not-a-uuid"},
        {"subject_id": "1"},
        {"since": "yesterday"},
        {"since": "2026-06-02T00:00:00Z", "until": "2026-06-01T00:00:00Z"},
        {"since": "2026-06-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"},
        {"until": "9999-12-31T23:59:59-14:00"},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"cursor": "not-a-cursor"},
        {"cursor": "x" * 500},
        {"limit": 0},
        {"limit": -1},
    ],
)
def test_bad_filters_are_422_and_say_nothing_back(
    client: TestClient, auditor: Account, params: dict[str, Any]
) -> None:
    response = client.get(EVENTS, params=params, headers=auditor.headers)
    assert response.status_code == 422, response.text
    assert "drop table" not in response.text


def test_a_cursor_from_another_list_is_only_a_position(
    client: TestClient, auditor: Account
) -> None:
    """Cursors are (time, id) pairs: one made elsewhere pages from that point, nothing more."""
    cursor = encode_cursor(BASE, uuid.uuid4())
    response = client.get(EVENTS, params={"cursor": cursor}, headers=auditor.headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


class TestNothingChangesTheLog:
    def test_no_operation_under_audit_events_does_anything_but_read(self, app: FastAPI) -> None:
        paths = app.openapi()["paths"]
        audit_paths = {path: sorted(item) for path, item in paths.items() if "audit" in path}
        assert audit_paths == {"/api/v1/audit-events": ["get"]}

    def test_writes_are_405_or_404_even_for_an_admin(
        self, client: TestClient, superuser: Account, session_factory: Callable[[], Session]
    ) -> None:
        recorded = event(0)
        add_events(session_factory, recorded)
        headers = superuser.headers
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = client.request(method, EVENTS, headers=headers, json={})
            assert response.status_code == 405, method
            response = client.request(method, f"{EVENTS}/{recorded.id}", headers=headers, json={})
            assert response.status_code in (404, 405), method
        walked = walk(client, superuser, 100, since=BASE.isoformat())
        assert str(recorded.id) in {item["id"] for item in walked}
