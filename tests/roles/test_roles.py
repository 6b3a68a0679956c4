"""Roles and permissions through the API: who may do what, and what happens when that
changes. Security rules each have a test that fails when the rule is taken out."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event
from starlette.testclient import TestClient

from features.users.permissions import MANAGE, MANAGE_ROLES, READ
from tests.conftest import Account

ME = "/api/v1/users/me"
USERS = "/api/v1/users"
ROLES = "/api/v1/roles"
PERMISSIONS = "/api/v1/permissions"


def create_role(client: TestClient, admin: Account, name: str, *granted: str) -> dict[str, Any]:
    response = client.post(
        ROLES, headers=admin.headers, json={"name": name, "permissions": list(granted)}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assign(client: TestClient, actor: Account, user: Account, *roles: str) -> Any:
    return client.put(f"{USERS}/{user.id}/roles", headers=actor.headers, json={"roles": roles})


def me(client: TestClient, account: Account) -> dict[str, Any]:
    response = client.get(ME, headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestWhatAnAccountHolds:
    def test_a_new_account_is_a_member_with_no_administrative_permission(
        self, client: TestClient, account: Account
    ) -> None:
        body = me(client, account)
        assert (body["roles"], body["permissions"], body["is_superuser"]) == (["member"], [], False)

    def test_admin_holds_every_declared_permission(
        self, client: TestClient, superuser: Account
    ) -> None:
        declared = client.get(PERMISSIONS, headers=superuser.headers).json()
        names = [item["name"] for item in declared]
        assert {READ, MANAGE, MANAGE_ROLES} <= set(names)
        assert all(item["description"] for item in declared)
        body = me(client, superuser)
        assert body["permissions"] == sorted(names)
        assert body["is_superuser"] is True
        assert body["roles"] == ["admin", "member"]

    def test_the_openapi_document_shows_each_routes_permission(self, app: FastAPI) -> None:
        document = app.openapi()
        scheme = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]
        assert MANAGE_ROLES in scheme["flows"]["password"]["scopes"]
        # Either a signed-in session holding the permission, or an API key granted it.
        assert document["paths"]["/api/v1/users"]["get"]["security"] == [
            {"OAuth2PasswordBearer": [READ]},
            {"APIKey": [READ]},
        ]
        assert document["paths"]["/api/v1/roles"]["post"]["security"] == [
            {"OAuth2PasswordBearer": [MANAGE_ROLES]},
            {"APIKey": [MANAGE_ROLES]},
        ]


class TestMembersCannotRaiseThemselves:
    def test_a_member_cannot_grant_themselves_a_role(
        self, client: TestClient, account: Account
    ) -> None:
        assert assign(client, account, account, "member", "admin").status_code == 403
        assert me(client, account)["roles"] == ["member"]

    def test_a_member_cannot_create_or_edit_a_role(
        self, client: TestClient, account: Account, superuser: Account
    ) -> None:
        support = create_role(client, superuser, "support", READ)
        created = client.post(
            ROLES, headers=account.headers, json={"name": "mine", "permissions": [MANAGE_ROLES]}
        )
        edited = client.patch(
            f"{ROLES}/{support['id']}",
            headers=account.headers,
            json={"permissions": [READ, MANAGE, MANAGE_ROLES]},
        )
        deleted = client.delete(f"{ROLES}/{support['id']}", headers=account.headers)
        assert (created.status_code, edited.status_code, deleted.status_code) == (403, 403, 403)
        roles = client.get(ROLES, headers=superuser.headers).json()
        assert [role["name"] for role in roles] == ["admin", "member", "support"]
        assert next(r for r in roles if r["name"] == "support")["permissions"] == [READ]

    def test_a_member_cannot_read_the_admin_routes(
        self, client: TestClient, account: Account
    ) -> None:
        for response in (
            client.get(USERS, headers=account.headers),
            client.get(f"{USERS}/{account.id}", headers=account.headers),
            client.get(ROLES, headers=account.headers),
            client.patch(f"{USERS}/{account.id}", headers=account.headers, json={"name": "x"}),
            client.get("/api/v1/audit-events", headers=account.headers),
        ):
            assert response.status_code == 403, response.request.url
        assert client.get(PERMISSIONS, headers=account.headers).status_code == 200


class TestCustomRoles:
    def test_a_role_grants_exactly_its_permissions(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        create_role(client, superuser, "support", READ)
        agent = make_account()
        answer = assign(client, superuser, agent, "member", "support")
        assert answer.status_code == 200, answer.text
        assert (answer.json()["roles"], answer.json()["permissions"]) == (
            ["member", "support"],
            [READ],
        )
        assert client.get(USERS, headers=agent.headers).status_code == 200
        patched = client.patch(f"{USERS}/{agent.id}", headers=agent.headers, json={"name": "x"})
        assert patched.status_code == 403  # users:manage it does not hold

    def test_an_unknown_permission_is_422_and_a_taken_name_409(
        self, client: TestClient, superuser: Account
    ) -> None:
        unknown = client.post(
            ROLES, headers=superuser.headers, json={"name": "x", "permissions": ["users:fly"]}
        )
        assert unknown.status_code == 422
        create_role(client, superuser, "editors")
        taken = client.post(ROLES, headers=superuser.headers, json={"name": "editors"})
        assert (taken.status_code, taken.json()) == (
            409,
            {"detail": "A role with this name already exists"},
        )
        bad_name = client.post(ROLES, headers=superuser.headers, json={"name": "Bad Name"})
        assert bad_name.status_code == 422

    def test_built_in_roles_cannot_be_deleted_renamed_or_emptied(
        self, client: TestClient, superuser: Account
    ) -> None:
        roles = {role["name"]: role for role in client.get(ROLES, headers=superuser.headers).json()}
        admin, member = roles["admin"], roles["member"]
        assert admin["grants_all"] is True
        for response in (
            client.delete(f"{ROLES}/{admin['id']}", headers=superuser.headers),
            client.delete(f"{ROLES}/{member['id']}", headers=superuser.headers),
            client.patch(f"{ROLES}/{member['id']}", headers=superuser.headers, json={"name": "m"}),
            client.patch(
                f"{ROLES}/{admin['id']}", headers=superuser.headers, json={"permissions": []}
            ),
        ):
            assert response.status_code == 409, response.text
        renamed = client.patch(
            f"{ROLES}/{member['id']}", headers=superuser.headers, json={"description": "All"}
        )
        assert renamed.status_code == 200

    def test_an_unknown_role_name_in_an_assignment_is_400(
        self, client: TestClient, superuser: Account, account: Account
    ) -> None:
        response = assign(client, superuser, account, "member", "nobody-has-this")
        assert response.status_code == 400
        assert me(client, account)["roles"] == ["member"]


class TestChangesTakeEffectAtOnce:
    def test_a_deleted_roles_holders_lose_its_permissions_on_their_next_request(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        role = create_role(client, superuser, "support", READ)
        agent = make_account(roles=["support"])
        assert client.get(USERS, headers=agent.headers).status_code == 200  # now cached
        deleted = client.delete(f"{ROLES}/{role['id']}", headers=superuser.headers)
        assert deleted.status_code == 204
        assert client.get(USERS, headers=agent.headers).status_code == 403
        assert me(client, agent)["roles"] == ["member"]

    def test_an_edited_roles_holders_have_the_new_permissions_on_their_next_request(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        role = create_role(client, superuser, "support", READ)
        agents = [make_account(roles=["support"]) for _ in range(3)]
        for agent in agents:
            assert client.get(USERS, headers=agent.headers).status_code == 200
        edited = client.patch(
            f"{ROLES}/{role['id']}", headers=superuser.headers, json={"permissions": []}
        )
        assert edited.status_code == 200
        for agent in agents:
            assert client.get(USERS, headers=agent.headers).status_code == 403

    def test_editing_a_role_costs_no_write_per_holder(
        self,
        client: TestClient,
        app: FastAPI,
        superuser: Account,
        make_account: Callable[..., Account],
        connection: Any,
    ) -> None:
        """The writes a role's edit makes are the same for 1 holder and for 12: the holders'
        cached accounts die by one tag, not one write each."""

        def statements_to_edit(role: dict[str, Any], granted: list[str]) -> int:
            seen: list[str] = []

            def count(*args: Any) -> None:
                seen.append(str(args[2]))

            event.listen(connection, "before_cursor_execute", count)
            try:
                response = client.patch(
                    f"{ROLES}/{role['id']}",
                    headers=superuser.headers,
                    json={"permissions": granted},
                )
            finally:
                event.remove(connection, "before_cursor_execute", count)
            assert response.status_code == 200, response.text
            writes = ("INSERT", "UPDATE", "DELETE")
            return len([statement for statement in seen if statement.lstrip().startswith(writes)])

        few, many = (
            create_role(client, superuser, "few", READ),
            create_role(client, superuser, "many", READ),
        )
        make_account(roles=["few"])
        for _ in range(12):
            make_account(roles=["many"])
        assert statements_to_edit(few, []) == statements_to_edit(many, [])


class TestOutranked:
    """users:manage or roles:manage alone never reaches further than the actor holds."""

    def test_a_user_manager_cannot_touch_an_admins_account(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
    ) -> None:
        create_role(client, superuser, "support", READ, MANAGE)
        agent = make_account(roles=["support"])
        admin = make_account(is_superuser=True)
        url = f"{USERS}/{admin.id}"
        for response in (
            client.patch(url, headers=agent.headers, json={"password": "taken-over-1"}),
            client.patch(url, headers=agent.headers, json={"email": "agent@example.com"}),
            client.patch(url, headers=agent.headers, json={"is_active": False}),
            client.delete(url, headers=agent.headers),
        ):
            assert response.status_code == 403, response.text
        assert me(client, admin)["email"] == admin.email
        # An account holding no more than the agent does is fair game.
        member = make_account()
        changed = client.patch(f"{USERS}/{member.id}", headers=agent.headers, json={"name": "N"})
        assert changed.status_code == 200

    def test_a_user_manager_cannot_make_anyone_admin(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
    ) -> None:
        create_role(client, superuser, "support", READ, MANAGE)
        agent = make_account(roles=["support"])
        member = make_account()
        promoted = client.patch(
            f"{USERS}/{member.id}", headers=agent.headers, json={"is_superuser": True}
        )
        created = client.post(
            USERS,
            headers=agent.headers,
            json={
                "name": "S",
                "email": "s@example.com",
                "password": "password-1",
                "is_superuser": True,
            },
        )
        assert (promoted.status_code, created.status_code) == (403, 403)
        assert me(client, member)["roles"] == ["member"]

    def test_a_role_manager_hands_out_only_what_it_holds(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
    ) -> None:
        create_role(client, superuser, "role-admins", MANAGE_ROLES, READ)
        manager = make_account(roles=["role-admins"])
        # Not a role with more than it holds, not admin, not more for itself.
        assert (
            client.post(
                ROLES, headers=manager.headers, json={"name": "x", "permissions": [MANAGE]}
            ).status_code
            == 403
        )
        assert assign(client, manager, manager, "role-admins", "admin").status_code == 403
        readers = client.post(
            ROLES, headers=manager.headers, json={"name": "r", "permissions": [READ]}
        )
        assert readers.status_code == 201
        member = make_account()
        assert assign(client, manager, member, "member", "r").status_code == 200
        # ...and cannot strip an admin of admin.
        admin = make_account(is_superuser=True)
        assert assign(client, manager, admin, "member").status_code == 403
        assert me(client, admin)["is_superuser"] is True

    def test_a_role_manager_cannot_add_to_a_role_a_permission_it_lacks(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
    ) -> None:
        create_role(client, superuser, "role-admins", MANAGE_ROLES, READ)
        manager = make_account(roles=["role-admins"])
        readers = create_role(client, superuser, "readers", READ)
        holder = make_account(roles=["readers"])
        widened = client.patch(
            f"{ROLES}/{readers['id']}",
            headers=manager.headers,
            json={"permissions": [READ, MANAGE]},
        )
        assert widened.status_code == 403
        assert client.get(f"{ROLES}/{readers['id']}", headers=superuser.headers).json()[
            "permissions"
        ] == [READ]
        assert MANAGE not in me(client, holder)["permissions"]

    def test_a_role_manager_cannot_edit_or_delete_a_role_granting_more_than_it_holds(
        self,
        client: TestClient,
        superuser: Account,
        make_account: Callable[..., Account],
    ) -> None:
        create_role(client, superuser, "role-admins", MANAGE_ROLES, READ)
        manager = make_account(roles=["role-admins"])
        stronger = create_role(client, superuser, "user-admins", READ, MANAGE)
        holder = make_account(roles=["user-admins"])
        url = f"{ROLES}/{stronger['id']}"
        renamed = client.patch(url, headers=manager.headers, json={"name": "renamed"})
        narrowed = client.patch(url, headers=manager.headers, json={"permissions": [READ]})
        deleted = client.delete(url, headers=manager.headers)
        assert (renamed.status_code, narrowed.status_code, deleted.status_code) == (403, 403, 403)
        kept = client.get(url, headers=superuser.headers).json()
        assert (kept["name"], kept["permissions"]) == ("user-admins", sorted([READ, MANAGE]))
        assert MANAGE in me(client, holder)["permissions"]


class TestSomeoneCanAlwaysManageRoles:
    def test_the_last_holder_of_roles_manage_cannot_be_demoted_deactivated_or_deleted(
        self, client: TestClient, superuser: Account
    ) -> None:
        url = f"{USERS}/{superuser.id}"
        attempts = [
            assign(client, superuser, superuser, "member"),
            client.patch(url, headers=superuser.headers, json={"is_superuser": False}),
            client.patch(url, headers=superuser.headers, json={"is_active": False}),
            client.delete(url, headers=superuser.headers),
            client.delete(ME, headers=superuser.headers),
        ]
        for response in attempts:
            assert (response.status_code, response.json()) == (
                409,
                {"detail": "No change may leave no active account that can manage roles"},
            )
        assert me(client, superuser)["is_superuser"] is True

    def test_nor_can_the_role_that_gives_it_be_edited_or_deleted(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        role = create_role(client, superuser, "role-admins", MANAGE_ROLES)
        manager = make_account(roles=["role-admins"])
        assign(client, superuser, superuser, "member")  # the manager remains: allowed
        for response in (
            client.patch(
                f"{ROLES}/{role['id']}", headers=manager.headers, json={"permissions": []}
            ),
            client.delete(f"{ROLES}/{role['id']}", headers=manager.headers),
        ):
            assert response.status_code == 409, response.text
        assert me(client, manager)["permissions"] == [MANAGE_ROLES]

    def test_with_another_holder_a_demotion_is_allowed(
        self, client: TestClient, superuser: Account, make_account: Callable[..., Account]
    ) -> None:
        other = make_account(is_superuser=True)
        response = client.patch(
            f"{USERS}/{other.id}", headers=superuser.headers, json={"is_superuser": False}
        )
        assert response.status_code == 200
        assert (response.json()["is_superuser"], response.json()["roles"]) == (False, ["member"])


@pytest.mark.parametrize("value", [True, False])
def test_is_superuser_is_an_alias_of_holding_admin(
    client: TestClient, superuser: Account, make_account: Callable[..., Account], value: bool
) -> None:
    account = make_account(is_superuser=not value)
    response = client.patch(
        f"{USERS}/{account.id}", headers=superuser.headers, json={"is_superuser": value}
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_superuser"] is value
    assert ("admin" in me(client, account)["roles"]) is value
