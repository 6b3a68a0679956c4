"""Email verification against a real SMTP server (aiosmtpd on localhost)."""

import time
from collections.abc import Callable

import pytest
from sqlmodel import Session
from starlette.testclient import TestClient

from features.users import service as users_service
from features.users.models import User
from tests.conftest import Account
from tests.recovery import test_recovery as mail_harness
from tests.recovery.test_recovery import PROJECT, SENDER, Inbox, link_token

# The SMTP server and the settings pointing at it, shared with the recovery tests.
smtp_server = mail_harness.smtp_server
inbox = mail_harness.inbox
extra_settings = mail_harness.extra_settings
settings_overrides = mail_harness.settings_overrides

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/auth/request-verification"
ME = "/api/v1/users/me"
BAD_LINK = {"detail": "Invalid or expired link"}
GENERIC_LOGIN_FAILURE = {
    "detail": "Incorrect email or password",
    "error": "invalid_grant",
    "error_description": "Incorrect email or password",
}
PASSWORD = "correct-horse-battery"


def register(client: TestClient, address: str) -> dict[str, object]:
    response = client.post(REGISTER, json={"name": "Ann", "email": address, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def verification_token(inbox: Inbox, address: str, count: int = 1) -> str:
    inbox.wait_for(count)
    messages = inbox.sent_to(address)
    assert messages, f"no mail to {address}"
    return link_token(messages[-1], "verify-email")


def me(client: TestClient, account: Account) -> dict[str, object]:
    body: dict[str, object] = client.get(ME, headers=account.headers).json()
    return body


def mark_verified(session: Session, account: Account) -> None:
    user = session.get(User, account.user.id)
    assert user is not None
    user.is_verified = True
    session.add(user)
    session.commit()


class TestRegistrationMail:
    def test_register_mails_a_link_that_verifies_the_address_once(
        self, client: TestClient, inbox: Inbox
    ) -> None:
        body = register(client, "Ann@Example.com")
        assert body["is_verified"] is False

        (message,) = inbox.wait_for(1)
        assert message["From"] == SENDER
        assert message["To"] == "ann@example.com"
        assert PROJECT in message["Subject"]
        token = link_token(message, "verify-email")
        assert PASSWORD not in message.as_string()

        assert client.post(VERIFY, json={"token": token}).status_code == 204
        tokens = client.post(LOGIN, data={"username": "ann@example.com", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        assert client.get(ME, headers=headers).json()["is_verified"] is True
        again = client.post(VERIFY, json={"token": token})
        assert (again.status_code, again.json()) == (400, BAD_LINK)

    def test_a_bad_token_is_400(self, client: TestClient) -> None:
        for token in ("never-issued", "x" * 512):
            response = client.post(VERIFY, json={"token": token})
            assert (response.status_code, response.json()) == (400, BAD_LINK)
        assert client.post(VERIFY, json={"token": ""}).status_code == 422

    def test_a_reset_link_does_not_verify(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        client.post("/api/v1/auth/password-recovery", json={"email": account.email})
        (message,) = inbox.wait_for(1)
        token = link_token(message, "reset-password")
        assert client.post(VERIFY, json={"token": token}).status_code == 400
        assert me(client, account)["is_verified"] is False


class TestRequireVerifiedEmail:
    @pytest.mark.parametrize("extra_settings", [{"REQUIRE_VERIFIED_EMAIL": True}])
    def test_login_of_an_unverified_user_is_the_generic_401_until_verified(
        self, client: TestClient, inbox: Inbox
    ) -> None:
        register(client, "ann@example.com")
        unverified = client.post(LOGIN, data={"username": "ann@example.com", "password": PASSWORD})
        wrong = client.post(LOGIN, data={"username": "ann@example.com", "password": "wrong-pw!"})
        assert (unverified.status_code, unverified.json()) == (401, GENERIC_LOGIN_FAILURE)
        assert unverified.json() == wrong.json()
        assert unverified.headers["www-authenticate"] == wrong.headers["www-authenticate"]

        token = verification_token(inbox, "ann@example.com")
        assert client.post(VERIFY, json={"token": token}).status_code == 204
        verified = client.post(LOGIN, data={"username": "ann@example.com", "password": PASSWORD})
        assert verified.status_code == 200

    def test_by_default_unverified_users_log_in(self, client: TestClient) -> None:
        register(client, "ann@example.com")
        response = client.post(LOGIN, data={"username": "ann@example.com", "password": PASSWORD})
        assert response.status_code == 200

    def test_the_first_superuser_is_created_verified(self, session: Session) -> None:
        assert users_service.ensure_first_superuser(session, "Root@Example.com", "hash")
        created = users_service.get_by_email(session, "root@example.com")
        assert created is not None
        assert created.is_verified is True


class TestEmailChange:
    def test_a_new_address_is_unverified_and_gets_its_own_link(
        self, client: TestClient, inbox: Inbox, account: Account, session: Session
    ) -> None:
        mark_verified(session, account)
        assert me(client, account)["is_verified"] is True

        response = client.patch(
            ME,
            headers=account.headers,
            json={"email": "New@Example.com", "current_password": account.password},
        )
        assert response.status_code == 200
        assert response.json()["is_verified"] is False
        token = verification_token(inbox, "new@example.com", count=2)
        # The old address hears of the change (tests/recovery/test_account_notices.py).
        assert {m["To"] for m in inbox.messages} == {account.email, "new@example.com"}

        assert client.post(VERIFY, json={"token": token}).status_code == 204
        assert me(client, account)["is_verified"] is True

    def test_a_link_sent_to_the_old_address_does_not_verify_the_new_one(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        assert client.post(RESEND, json={"email": account.email}).status_code == 202
        old_token = verification_token(inbox, account.email)
        client.patch(
            ME,
            headers=account.headers,
            json={"email": "moved@example.com", "current_password": account.password},
        )
        assert client.post(VERIFY, json={"token": old_token}).status_code == 400
        assert me(client, account)["is_verified"] is False

    def test_renaming_or_repeating_the_address_sends_nothing_and_keeps_the_state(
        self,
        client: TestClient,
        inbox: Inbox,
        make_account: Callable[..., Account],
        session: Session,
    ) -> None:
        unverified, verified = make_account(), make_account()
        mark_verified(session, verified)
        for caller, state in ((unverified, False), (verified, True)):
            same_address = {"email": caller.email.upper(), "current_password": caller.password}
            for change in ({"name": "Renamed"}, same_address):
                response = client.patch(ME, headers=caller.headers, json=change)
                assert response.status_code == 200
                assert response.json()["is_verified"] is state
        time.sleep(0.2)
        assert inbox.messages == []

    def test_a_change_that_is_rolled_back_mails_nothing(
        self, client: TestClient, inbox: Inbox, make_account: Callable[..., Account]
    ) -> None:
        mover, owner = make_account(), make_account()
        # The address is taken: the change fails at its commit, and its mail job with it.
        response = client.patch(
            ME,
            headers=mover.headers,
            json={"email": owner.email, "current_password": mover.password},
        )
        assert response.status_code == 409
        time.sleep(0.2)
        assert inbox.messages == []
        assert me(client, mover)["email"] == mover.email

    def test_an_admin_change_of_address_mails_the_new_one(
        self, client: TestClient, inbox: Inbox, account: Account, superuser: Account
    ) -> None:
        response = client.patch(
            f"/api/v1/users/{account.id}",
            headers=superuser.headers,
            json={"email": "admin-moved@example.com"},
        )
        assert response.status_code == 200
        assert response.json()["is_verified"] is False
        token = verification_token(inbox, "admin-moved@example.com", count=2)
        assert client.post(VERIFY, json={"token": token}).status_code == 204
        assert me(client, account)["is_verified"] is True


class TestRequestVerification:
    def test_known_unknown_and_verified_addresses_get_one_answer_and_only_one_mail(
        self,
        client: TestClient,
        inbox: Inbox,
        make_account: Callable[..., Account],
        session: Session,
    ) -> None:
        unverified, verified = make_account(), make_account()
        mark_verified(session, verified)
        answers = {
            address: client.post(RESEND, json={"email": address})
            for address in (unverified.email, verified.email, "nobody-here@example.com")
        }
        assert {(r.status_code, r.content) for r in answers.values()} == {
            (202, answers[unverified.email].content)
        }
        inbox.wait_for(1)
        time.sleep(0.2)
        assert [m["To"] for m in inbox.messages] == [unverified.email]
        token = link_token(inbox.messages[0], "verify-email")
        assert client.post(VERIFY, json={"token": token}).status_code == 204

    @pytest.mark.parametrize("extra_settings", [{"RECOVERY_RATE_LIMIT": "2/hour"}])
    def test_resending_is_rate_limited(self, client: TestClient, account: Account) -> None:
        for _ in range(2):
            assert client.post(RESEND, json={"email": account.email}).status_code == 202
        response = client.post(RESEND, json={"email": account.email})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
