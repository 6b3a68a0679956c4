"""Account changes that need proof and leave a trail, against a real SMTP server.

The takeover these close: with only a victim's access token, move the account to an address
the attacker reads, then reset its password from there. Changing the email now needs the
current password; the previous address gets a link that puts it back and ends every
session; a password change or reset tells the account's address.
"""

from collections.abc import Callable

from sqlmodel import Session
from starlette.testclient import TestClient

from features.users.models import User
from tests.conftest import Account
from tests.recovery import test_recovery as mail_harness
from tests.recovery.test_recovery import PROJECT, Inbox, link_token

smtp_server = mail_harness.smtp_server
inbox = mail_harness.inbox
extra_settings = mail_harness.extra_settings
settings_overrides = mail_harness.settings_overrides

ME = "/api/v1/users/me"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
RECOVERY = "/api/v1/auth/password-recovery"
RESET = "/api/v1/auth/reset-password"
RESTORE = "/api/v1/auth/restore-email"
ATTACKER = "attacker@evil.example"
BAD_LINK = {"detail": "Invalid or expired link"}


def subjects_to(inbox: Inbox, address: str) -> list[str]:
    return [str(message["Subject"]) for message in inbox.sent_to(address)]


def restore_token(inbox: Inbox, address: str) -> str:
    (message,) = [m for m in inbox.sent_to(address) if "email address was changed" in m["Subject"]]
    return link_token(message, "restore-email")


def move(client: TestClient, account: Account, address: str) -> None:
    response = client.patch(
        ME, headers=account.headers, json={"email": address, "current_password": account.password}
    )
    assert response.status_code == 200, response.text


class TestStolenAccessToken:
    def test_cannot_move_the_account_without_the_password(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        stolen = account.headers
        without = client.patch(ME, headers=stolen, json={"email": ATTACKER})
        guessed = client.patch(
            ME, headers=stolen, json={"email": ATTACKER, "current_password": "guess-1234"}
        )
        assert (without.status_code, guessed.status_code) == (422, 400)
        assert client.get(ME, headers=stolen).json()["email"] == account.email
        # And so the attacker's address gets no reset link.
        assert client.post(RECOVERY, json={"email": ATTACKER}).status_code == 202
        assert inbox.sent_to(ATTACKER) == []


class TestEmailChange:
    def test_the_previous_address_gets_a_link_that_puts_it_back_and_ends_every_session(
        self, client: TestClient, inbox: Inbox, account: Account, session: Session
    ) -> None:
        move(client, account, ATTACKER)
        inbox.wait_for(2)  # the new address's confirmation, the old address's notice
        (notice,) = inbox.sent_to(account.email)
        assert notice["Subject"] == f"{PROJECT}: your account's email address was changed"
        assert account.password not in notice.as_string()
        token = restore_token(inbox, account.email)

        # The new address resets the password (what the attacker would do next)...
        assert client.post(RECOVERY, json={"email": ATTACKER}).status_code == 202
        reset_link = link_token(inbox.wait_for(3)[-1], "reset-password")
        reset = client.post(RESET, json={"token": reset_link, "new_password": "attacker-pass"})
        assert reset.status_code == 204
        attacker = client.post(LOGIN, data={"username": ATTACKER, "password": "attacker-pass"})
        assert attacker.status_code == 200
        attacker_tokens = attacker.json()

        # ...and the owner follows the link mailed to the old address: it is theirs again.
        assert client.post(RESTORE, json={"token": token}).status_code == 204
        user = session.get(User, account.user.id)
        assert user is not None
        session.refresh(user)
        assert (user.email, user.is_verified) == (account.email, True)
        attacker_headers = {"Authorization": f"Bearer {attacker_tokens['access_token']}"}
        assert client.get(ME, headers=attacker_headers).status_code == 401
        refreshed = client.post(REFRESH, json={"refresh_token": attacker_tokens["refresh_token"]})
        assert refreshed.status_code == 401
        assert client.get(ME, headers=account.headers).status_code == 401
        # The attacker's address no longer signs in; the owner resets from their own.
        retry = client.post(LOGIN, data={"username": ATTACKER, "password": "attacker-pass"})
        assert retry.status_code == 401
        again = client.post(RESTORE, json={"token": token})
        assert (again.status_code, again.json()) == (400, BAD_LINK)

    def test_an_admin_change_of_address_also_mails_the_previous_one(
        self, client: TestClient, inbox: Inbox, account: Account, superuser: Account
    ) -> None:
        response = client.patch(
            f"/api/v1/users/{account.id}",
            headers=superuser.headers,
            json={"email": "n@example.com"},
        )
        assert response.status_code == 200
        inbox.wait_for(2)
        assert restore_token(inbox, account.email)

    def test_an_address_taken_meanwhile_is_not_put_back(
        self,
        client: TestClient,
        inbox: Inbox,
        make_account: Callable[..., Account],
    ) -> None:
        owner = make_account()
        move(client, owner, "elsewhere@example.com")
        inbox.wait_for(2)
        token = restore_token(inbox, owner.email)
        newcomer = make_account()
        move(client, newcomer, owner.email)  # someone else takes the old address
        response = client.post(RESTORE, json={"token": token})
        assert response.status_code == 409
        assert client.get(ME, headers=owner.headers).json()["email"] == "elsewhere@example.com"

    def test_the_restored_address_counts_as_verified(
        self, client: TestClient, inbox: Inbox, account: Account, session: Session
    ) -> None:
        # The link was mailed to that address: following it proves the owner reads it.
        move(client, account, "elsewhere@example.com")
        inbox.wait_for(2)
        restored = client.post(RESTORE, json={"token": restore_token(inbox, account.email)})
        assert restored.status_code == 204
        user = session.get(User, account.user.id)
        assert user is not None
        session.refresh(user)
        assert (user.email, user.is_verified) == (account.email, True)

    def test_a_forged_link_is_400(self, client: TestClient) -> None:
        response = client.post(RESTORE, json={"token": "not-a-link"})
        assert (response.status_code, response.json()) == (400, BAD_LINK)


class TestPasswordNotices:
    def test_a_password_change_tells_the_account(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        response = client.post(
            f"{ME}/password",
            headers=account.headers,
            json={"current_password": account.password, "new_password": "brand-new-pass"},
        )
        assert response.status_code == 204
        (notice,) = inbox.wait_for(1)
        assert (notice["To"], notice["Subject"]) == (
            account.email,
            f"{PROJECT}: your password was changed",
        )
        assert "brand-new-pass" not in notice.as_string()

    def test_a_reset_tells_the_account(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        assert client.post(RECOVERY, json={"email": account.email}).status_code == 202
        token = link_token(inbox.wait_for(1)[0], "reset-password")
        reset = client.post(RESET, json={"token": token, "new_password": "reset-password-1"})
        assert reset.status_code == 204
        inbox.wait_for(2)
        assert subjects_to(inbox, account.email)[-1] == f"{PROJECT}: your password was changed"

    def test_an_admin_setting_a_password_tells_the_account(
        self, client: TestClient, inbox: Inbox, account: Account, superuser: Account
    ) -> None:
        response = client.patch(
            f"/api/v1/users/{account.id}",
            headers=superuser.headers,
            json={"password": "set-by-admin-1"},
        )
        assert response.status_code == 200
        inbox.wait_for(1)
        assert subjects_to(inbox, account.email) == [f"{PROJECT}: your password was changed"]

    def test_a_wrong_current_password_changes_nothing_and_mails_nothing(
        self, client: TestClient, inbox: Inbox, account: Account
    ) -> None:
        response = client.post(
            f"{ME}/password",
            headers=account.headers,
            json={"current_password": "not-it-at-all", "new_password": "brand-new-pass"},
        )
        assert response.status_code == 400
        assert inbox.messages == []
