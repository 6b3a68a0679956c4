"""Every event the audit log records, through the real routes (and a real SMTP server for the
links): its time, type, actor, subject, client address, user agent and details; nothing when
the change rolls back."""

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from core.data import audit
from core.data.audit import AuditEvent
from core.data.clock import as_utc, utc_now
from features.users import service as users_service
from features.users.models import AccountSession
from tests.audit.conftest import CLIENT_IP, USER_AGENT, Events
from tests.conftest import DEFAULT_PASSWORD, TEST_SECRET_KEY, Account
from tests.recovery import test_recovery as mail_harness
from tests.recovery.test_recovery import Inbox, link_token, request_reset_token

smtp_server = mail_harness.smtp_server
inbox = mail_harness.inbox
extra_settings = mail_harness.extra_settings
settings_overrides = mail_harness.settings_overrides

API = "/api/v1"
LOGIN = f"{API}/auth/login"
ME = f"{API}/users/me"
USERS = f"{API}/users"
ROLES = f"{API}/roles"
NEW_PASSWORD = "a-brand-new-password"


def one(events: Events, type: str) -> AuditEvent:
    found = events(type)
    assert len(found) == 1, [(event.type, event.details) for event in found]
    return found[0]


def from_the_client(event: AuditEvent, since: datetime) -> None:
    """Recorded during this request, from the test client's address and user agent."""
    assert since <= as_utc(event.created_at) <= utc_now()
    assert (event.client_ip, event.user_agent) == (CLIENT_IP, USER_AGENT)


def sign_in(client: TestClient, email: str, password: str) -> int:
    return client.post(LOGIN, data={"username": email, "password": password}).status_code


def sign_in_tokens(client: TestClient, email: str, password: str) -> dict[str, str]:
    response = client.post(LOGIN, data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


class TestSignIn:
    def test_a_sign_in_records_the_account_and_its_session(
        self, make_account: Callable[..., Account], events: Events, session: Session
    ) -> None:
        started = utc_now()
        account = make_account()  # signs in through the API
        event = one(events, "auth.signed_in")
        from_the_client(event, started)
        assert event.actor_id == event.subject_id == account.user.id
        signed_in = session.get(AccountSession, uuid.UUID(event.details["session_id"]))
        assert signed_in is not None
        assert signed_in.user_id == account.user.id

    def test_a_wrong_password_records_the_account_and_why(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        started = utc_now()
        assert sign_in(client, account.email, "not-the-password") == 401
        event = one(events, "auth.sign_in_failed")
        from_the_client(event, started)
        assert (event.actor_id, event.subject_id) == (None, account.user.id)
        assert event.details == {"reason": "wrong_password"}

    def test_an_inactive_account_is_recorded_as_such(
        self, client: TestClient, make_account: Callable[..., Account], events: Events
    ) -> None:
        account = make_account(is_active=False)
        assert sign_in(client, account.email, account.password) == 401
        event = one(events, "auth.sign_in_failed")
        assert (event.subject_id, event.details) == (account.user.id, {"reason": "inactive"})

    def test_an_unknown_address_is_kept_masked_and_fingerprinted_never_in_clear(
        self, client: TestClient, events: Events
    ) -> None:
        started = utc_now()
        for address in ("Nobody.Here@Example.com", "nobody.here@example.com", "else@example.com"):
            assert sign_in(client, address, "some-guess") == 401
        first, again, other = events("auth.sign_in_failed")
        from_the_client(first, started)
        assert (first.actor_id, first.subject_id) == (None, None)
        # HMAC-SHA256 of the lower-cased address under a key derived from SECRET_KEY: without
        # the key, nobody can test a list of addresses against the log.
        key = hmac.new(TEST_SECRET_KEY.encode(), b"audit-addresses", hashlib.sha256).digest()
        expected = hmac.new(key, b"nobody.here@example.com", hashlib.sha256).hexdigest()
        fingerprint = expected[:32]
        assert audit.address_fingerprint("another-key-" * 4, "nobody.here@example.com") != (
            fingerprint
        )
        assert first.details == {
            "reason": "unknown_account",
            "email": "n***@example.com",
            "email_fingerprint": fingerprint,
        }
        assert len(fingerprint) == 32
        # The same address (any case) is the same fingerprint: repeated guesses show up.
        assert again.details == first.details
        assert other.details["email_fingerprint"] != fingerprint
        row = first.model_dump_json().lower()
        assert "nobody.here" not in row
        assert "nobody" not in row

    def test_the_longest_address_in_any_alphabet_is_recorded_not_refused(
        self, client: TestClient, events: Events
    ) -> None:
        """254 characters of four-byte UTF-8 (the form's bound): masked, it still fits the
        details' bound, so the attempt gets its 401 and its event, never a 500."""
        address = "a@" + "\U0001f600" * 252
        assert sign_in(client, address, "some-guess") == 401
        event = one(events, "auth.sign_in_failed")
        assert event.details["email"] == "a***@" + "\U0001f600" * 252

    @pytest.mark.parametrize("extra_settings", [{"LOGIN_RATE_LIMIT": "2/minute"}])
    def test_an_attempt_the_throttle_refuses_records_nothing(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        """The throttle sheds a flood before the database: a refused attempt costs no write
        (account's own sign-in was the first attempt of the two allowed)."""
        assert sign_in(client, account.email, "guess-one") == 401
        assert sign_in(client, account.email, "guess-two") == 429
        assert len(events("auth.sign_in_failed")) == 1


class TestSessions:
    def test_signing_out_records_the_session_once(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        started = utc_now()
        body = {"refresh_token": account.refresh_token}
        for _ in range(2):
            assert client.post(f"{API}/auth/logout", json=body).status_code == 204
        assert (
            client.post(f"{API}/auth/logout", json={"refresh_token": "x" * 40}).status_code == 204
        )
        event = one(events, "users.signed_out")
        from_the_client(event, started)
        assert event.actor_id == event.subject_id == account.user.id
        signed_in = one(events, "auth.signed_in")
        assert event.details == {"session_id": signed_in.details["session_id"]}

    def test_a_replayed_refresh_token_is_recorded_without_an_actor(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        body = {"refresh_token": account.refresh_token}
        assert client.post(f"{API}/auth/refresh", json=body).status_code == 200
        started = utc_now()
        assert client.post(f"{API}/auth/refresh", json=body).status_code == 401
        event = one(events, "users.refresh_reused")
        from_the_client(event, started)
        assert (event.actor_id, event.subject_id) == (None, account.user.id)
        signed_in = one(events, "auth.signed_in")
        assert event.details == {"session_id": signed_in.details["session_id"]}

    def test_ending_a_session_from_the_list_names_who_ended_it(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
        events: Events,
    ) -> None:
        account = make_account()
        second = sign_in_tokens(client, account.email, account.password)
        sessions = client.get(f"{ME}/sessions", headers=account.headers).json()
        other = next(item["id"] for item in sessions if not item["current"])
        started = utc_now()
        mine = client.delete(f"{ME}/sessions/{other}", headers=account.headers)
        assert mine.status_code == 204
        again = client.delete(f"{ME}/sessions/{other}", headers=account.headers)
        assert again.status_code == 404  # already ended: nothing more to record
        current = next(item["id"] for item in sessions if item["current"])
        by_admin = client.delete(
            f"{USERS}/{account.id}/sessions/{current}", headers=superuser.headers
        )
        assert by_admin.status_code == 204
        by_owner, by_manager = events("users.session_ended")
        for event in (by_owner, by_manager):
            from_the_client(event, started)
            assert event.subject_id == account.user.id
        assert by_owner.actor_id == account.user.id
        assert by_owner.details == {"session_id": other}
        assert by_manager.actor_id == superuser.user.id
        assert by_manager.details == {"session_id": current}
        assert second["access_token"]  # the other session was this sign-in's

    def test_signing_out_everywhere_else_is_one_event(
        self, client: TestClient, make_account: Callable[..., Account], events: Events
    ) -> None:
        account = make_account()
        for _ in range(2):
            sign_in_tokens(client, account.email, account.password)
        current = next(
            item["id"]
            for item in client.get(f"{ME}/sessions", headers=account.headers).json()
            if item["current"]
        )
        for _ in range(2):  # the second time there is nothing else to end
            response = client.delete(f"{ME}/sessions", headers=account.headers)
            assert response.status_code == 204
        event = one(events, "users.other_sessions_ended")
        assert event.actor_id == event.subject_id == account.user.id
        assert event.details == {"kept_session_id": current, "ended": 2}


class TestSelfService:
    def test_registering_records_an_account_created_by_itself(
        self, client: TestClient, events: Events
    ) -> None:
        started = utc_now()
        body = {"name": "New", "email": "new@example.com", "password": DEFAULT_PASSWORD}
        response = client.post(f"{API}/auth/register", json=body)
        assert response.status_code == 201
        event = one(events, "users.created")
        from_the_client(event, started)
        assert str(event.actor_id) == str(event.subject_id) == response.json()["id"]
        assert event.details == {"roles": ["member"], "is_active": True}

    def test_a_password_change_is_recorded(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        started = utc_now()
        change = {"current_password": account.password, "new_password": NEW_PASSWORD}
        response = client.post(f"{ME}/password", json=change, headers=account.headers)
        assert response.status_code == 204
        event = one(events, "users.password_changed")
        from_the_client(event, started)
        assert event.actor_id == event.subject_id == account.user.id
        assert event.details == {}

    def test_a_wrong_current_password_records_no_change(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        change = {"current_password": "not-it-at-all", "new_password": NEW_PASSWORD}
        response = client.post(f"{ME}/password", json=change, headers=account.headers)
        assert response.status_code == 400
        assert events("users.password_changed") == []

    def test_an_email_change_is_recorded_with_both_addresses_masked(
        self, client: TestClient, make_account: Callable[..., Account], events: Events
    ) -> None:
        account = make_account(email="jane@example.com")
        started = utc_now()
        body = {"email": "kate@example.org", "current_password": account.password}
        assert client.patch(ME, json=body, headers=account.headers).status_code == 200
        event = one(events, "users.email_changed")
        from_the_client(event, started)
        assert event.actor_id == event.subject_id == account.user.id
        assert event.details == {
            "fields": ["email"],
            "email": {"old": "j***@example.com", "new": "k***@example.org"},
        }
        assert events("users.updated") == []

    def test_a_name_change_is_an_update_by_the_owner_naming_the_field_only(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        assert (
            client.patch(ME, json={"name": "Renamed"}, headers=account.headers).status_code == 200
        )
        assert (
            client.patch(ME, json={"name": "Renamed"}, headers=account.headers).status_code == 200
        )
        event = one(events, "users.updated")  # the second changed nothing, and says nothing
        assert event.actor_id == event.subject_id == account.user.id
        assert event.details == {"fields": ["name"]}

    def test_deleting_my_account_is_recorded_and_outlives_it(
        self, client: TestClient, make_account: Callable[..., Account], events: Events
    ) -> None:
        account = make_account(email="leaver@example.com")
        started = utc_now()
        assert client.delete(ME, headers=account.headers).status_code == 204
        event = one(events, "users.deleted")
        from_the_client(event, started)
        assert event.actor_id == event.subject_id == account.user.id
        assert event.details == {"email": "l***@example.com"}
        # The account's whole trail stays.
        assert {e.type for e in events(subject_id=account.user.id)} >= {
            "auth.signed_in",
            "users.deleted",
        }

    def test_a_reset_link_is_recorded_as_the_owner_resetting(
        self, client: TestClient, account: Account, inbox: Inbox, events: Events
    ) -> None:
        token = request_reset_token(client, inbox, account.email)
        started = utc_now()
        body = {"token": token, "new_password": NEW_PASSWORD}
        assert client.post(f"{API}/auth/reset-password", json=body).status_code == 204
        event = one(events, "recovery.password_reset")
        from_the_client(event, started)
        assert event.actor_id == event.subject_id == account.user.id
        assert event.details == {}

    def test_a_verification_link_is_recorded(
        self, client: TestClient, inbox: Inbox, events: Events
    ) -> None:
        body = {"name": "V", "email": "verify-me@example.com", "password": DEFAULT_PASSWORD}
        user_id = client.post(f"{API}/auth/register", json=body).json()["id"]
        token = link_token(inbox.wait_for(1)[-1], "verify-email")
        started = utc_now()
        assert client.post(f"{API}/auth/verify-email", json={"token": token}).status_code == 204
        event = one(events, "recovery.email_verified")
        from_the_client(event, started)
        assert str(event.actor_id) == str(event.subject_id) == user_id
        # Spent: a second use verifies nothing and records nothing.
        assert client.post(f"{API}/auth/verify-email", json={"token": token}).status_code == 400
        assert len(events("recovery.email_verified")) == 1

    def test_putting_the_previous_address_back_is_recorded(
        self, client: TestClient, make_account: Callable[..., Account], inbox: Inbox, events: Events
    ) -> None:
        account = make_account(email="owner@example.com")
        body = {"email": "moved@example.com", "current_password": account.password}
        assert client.patch(ME, json=body, headers=account.headers).status_code == 200
        (notice,) = [m for m in inbox.wait_for(2) if m["To"] == "owner@example.com"]
        started = utc_now()
        token = link_token(notice, "restore-email")
        assert client.post(f"{API}/auth/restore-email", json={"token": token}).status_code == 204
        event = one(events, "recovery.email_restored")
        from_the_client(event, started)
        assert event.actor_id == event.subject_id == account.user.id
        assert event.details == {"email": "o***@example.com"}


class TestAdministration:
    def test_an_admin_creating_an_account_is_the_actor(
        self, client: TestClient, superuser: Account, events: Events
    ) -> None:
        started = utc_now()
        body = {"name": "Made", "email": "made@example.com", "password": DEFAULT_PASSWORD}
        response = client.post(USERS, json=body, headers=superuser.headers)
        assert response.status_code == 201
        event = one(events, "users.created")
        from_the_client(event, started)
        assert event.actor_id == superuser.user.id
        assert str(event.subject_id) == response.json()["id"]
        assert event.details == {"roles": ["member"], "is_active": True}

    def test_an_admin_update_names_the_fields_and_shows_old_and_new_flags(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
        events: Events,
    ) -> None:
        target = make_account(email="target@example.com")
        started = utc_now()
        changes = {
            "name": "Changed",
            "email": "elsewhere@example.com",
            "password": NEW_PASSWORD,
            "is_active": False,
            "is_superuser": True,
        }
        response = client.patch(f"{USERS}/{target.id}", json=changes, headers=superuser.headers)
        assert response.status_code == 200, response.text
        event = one(events, "users.updated")
        from_the_client(event, started)
        assert (event.actor_id, event.subject_id) == (superuser.user.id, target.user.id)
        assert event.details == {
            "fields": ["email", "is_active", "is_superuser", "name", "password"],
            "email": {"old": "t***@example.com", "new": "e***@example.com"},
            "is_active": {"old": True, "new": False},
            "is_superuser": {"old": False, "new": True},
        }

    def test_an_admin_deleting_an_account_is_the_actor(
        self, client: TestClient, superuser: Account, account: Account, events: Events
    ) -> None:
        started = utc_now()
        assert client.delete(f"{USERS}/{account.id}", headers=superuser.headers).status_code == 204
        event = one(events, "users.deleted")
        from_the_client(event, started)
        assert (event.actor_id, event.subject_id) == (superuser.user.id, account.user.id)

    def test_the_first_superuser_command_records_no_actor_and_no_origin(
        self, session: Session, events: Events
    ) -> None:
        assert users_service.ensure_first_superuser(session, "root@example.com", "x" * 60)
        event = one(events, "users.created")
        assert (event.actor_id, event.client_ip, event.user_agent) == (None, None, None)
        assert event.details == {"roles": ["admin", "member"], "is_active": True}

    def test_every_role_change_is_recorded_with_its_actor(
        self, client: TestClient, superuser: Account, account: Account, events: Events
    ) -> None:
        headers = superuser.headers
        started = utc_now()
        created = client.post(
            ROLES, json={"name": "support", "permissions": ["users:read"]}, headers=headers
        )
        assert created.status_code == 201
        role_id = created.json()["id"]
        edit = {"name": "helpdesk", "permissions": ["audit:read", "users:read"]}
        assert client.patch(f"{ROLES}/{role_id}", json=edit, headers=headers).status_code == 200
        assign = {"roles": ["helpdesk", "member"]}
        response = client.put(f"{USERS}/{account.id}/roles", json=assign, headers=headers)
        assert response.status_code == 200
        assert client.delete(f"{ROLES}/{role_id}", headers=headers).status_code == 204

        recorded = [e for e in events() if e.type.startswith("roles.")]
        assert [e.type for e in recorded] == [
            "roles.created",
            "roles.updated",
            "roles.assigned",
            "roles.deleted",
        ]
        for event in recorded:
            from_the_client(event, started)
            assert event.actor_id == superuser.user.id
        created_event, updated, assigned, deleted = recorded
        assert created_event.subject_id is None
        assert created_event.details == {
            "role_id": role_id,
            "name": "support",
            "permissions": ["users:read"],
        }
        assert updated.details == {
            "role_id": role_id,
            "name": "support",
            "renamed": {"old": "support", "new": "helpdesk"},
            "permissions": {"old": ["users:read"], "new": ["audit:read", "users:read"]},
        }
        assert assigned.subject_id == account.user.id
        assert assigned.details == {"roles": {"old": ["member"], "new": ["helpdesk", "member"]}}
        assert deleted.details == {
            "role_id": role_id,
            "name": "helpdesk",
            "permissions": ["audit:read", "users:read"],
        }


class TestApiKeys:
    def test_making_and_revoking_a_key_is_recorded_without_its_secret(
        self, client: TestClient, superuser: Account, account: Account, events: Events
    ) -> None:
        started = utc_now()
        made = client.post(
            f"{API}/api-keys", json={"name": "ci", "permissions": []}, headers=account.headers
        )
        assert made.status_code == 201, made.text
        key = made.json()
        created = one(events, "api_keys.created")
        from_the_client(created, started)
        assert created.actor_id == created.subject_id == account.user.id
        assert created.details == {
            "key_id": key["id"],
            "name": "ci",
            "prefix": key["prefix"],
            "permissions": [],
        }
        assert key["key"] not in created.model_dump_json()
        # Revoked by a manager of every key: the manager acted, on the owner's key.
        assert (
            client.delete(f"{API}/api-keys/{key['id']}", headers=superuser.headers).status_code
            == 204
        )
        revoked = one(events, "api_keys.revoked")
        from_the_client(revoked, started)
        assert (revoked.actor_id, revoked.subject_id) == (superuser.user.id, account.user.id)
        assert revoked.details == {"key_id": key["id"], "name": "ci", "prefix": key["prefix"]}

    def test_a_key_that_asks_for_more_than_its_owner_holds_records_nothing(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        body = {"name": "greedy", "permissions": ["audit:read"]}
        assert client.post(f"{API}/api-keys", json=body, headers=account.headers).status_code == 403
        assert events("api_keys.created") == []


class TestRolledBackChangesRecordNothing:
    def test_an_admin_update_to_a_taken_address(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
        events: Events,
    ) -> None:
        target, other = make_account(), make_account()
        body = {"email": other.email, "name": "Would change too"}
        response = client.patch(f"{USERS}/{target.id}", json=body, headers=superuser.headers)
        assert response.status_code == 409
        assert events("users.updated") == []

    def test_my_move_to_a_taken_address(
        self, client: TestClient, make_account: Callable[..., Account], events: Events
    ) -> None:
        account, other = make_account(), make_account()
        body = {"email": other.email, "current_password": account.password}
        assert client.patch(ME, json=body, headers=account.headers).status_code == 409
        assert events("users.email_changed") == []

    def test_a_sign_up_with_a_taken_address(
        self, client: TestClient, account: Account, events: Events
    ) -> None:
        body = {"name": "Again", "email": account.email, "password": DEFAULT_PASSWORD}
        assert client.post(f"{API}/auth/register", json=body).status_code == 409
        assert events("users.created") == []

    def test_changes_that_would_leave_nobody_able_to_manage_roles(
        self, client: TestClient, superuser: Account, events: Events
    ) -> None:
        headers = superuser.headers
        demote = {"roles": ["member"]}
        response = client.put(f"{USERS}/{superuser.id}/roles", json=demote, headers=headers)
        assert response.status_code == 409
        assert client.delete(ME, headers=headers).status_code == 409
        deactivate = {"is_active": False}
        response = client.patch(f"{USERS}/{superuser.id}", json=deactivate, headers=headers)
        assert response.status_code == 409
        assert [e.type for e in events() if e.type != "auth.signed_in"] == []

    def test_a_role_renamed_to_a_taken_name(
        self, client: TestClient, superuser: Account, events: Events
    ) -> None:
        headers = superuser.headers
        role_id = client.post(ROLES, json={"name": "first"}, headers=headers).json()["id"]
        assert client.post(ROLES, json={"name": "second"}, headers=headers).status_code == 201
        response = client.patch(f"{ROLES}/{role_id}", json={"name": "second"}, headers=headers)
        assert response.status_code == 409
        assert events("roles.updated") == []


def test_a_unit_of_work_that_fails_after_recording_leaves_no_event(
    session_factory: Callable[[], Session],
) -> None:
    """The writer joins the caller's transaction: a failure after `record` takes the event
    back with everything else."""

    class Boom(Exception):
        pass

    def fails_after_recording(session: Session) -> None:
        audit.record(session, users_service.ACCOUNT_DELETED, actor_id=None, subject_id=None)
        session.flush()
        raise Boom

    with pytest.raises(Boom), session_factory() as session:
        fails_after_recording(session)
    with session_factory() as session:
        assert (
            session.exec(select(AuditEvent).where(col(AuditEvent.type) == "users.deleted")).all()
            == []
        )
