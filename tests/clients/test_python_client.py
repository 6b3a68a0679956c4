"""The generated Python client (clients/python) against a live server: every step answers
with the model class the OpenAPI document promises, errors included, and a status the
document does not list would raise (`raise_on_unexpected_status`)."""

import uuid
from typing import TypeVar

from fastapi_accounts_client import AuthenticatedClient, Client
from fastapi_accounts_client.api.auth import auth_login, auth_logout, auth_refresh, auth_register
from fastapi_accounts_client.api.roles import (
    roles_assign_roles,
    roles_create_role,
    roles_delete_role,
    roles_list_permissions,
)
from fastapi_accounts_client.api.users import users_list_users, users_read_me, users_update_me
from fastapi_accounts_client.models import (
    ErrorMessage,
    HTTPValidationError,
    LoginForm,
    OAuth2ErrorMessage,
    PermissionPublic,
    RefreshRequest,
    RoleAssignment,
    RoleCreate,
    RolePublic,
    TokenPair,
    UserPublic,
    UserRegister,
    UsersPublic,
    UserUpdateMe,
)

from tests.clients.conftest import LiveApi
from tests.conftest import DEFAULT_PASSWORD

Parsed = TypeVar("Parsed")


def expect(model: type[Parsed], parsed: object) -> Parsed:
    """The client's answer, checked to be the model class the step must produce."""
    assert isinstance(parsed, model), f"expected {model.__name__}, got {parsed!r}"
    return parsed


def anonymous(api: LiveApi) -> Client:
    return Client(base_url=api.base_url, raise_on_unexpected_status=True)


def signed_in(api: LiveApi, tokens: TokenPair) -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url=api.base_url, token=tokens.access_token, raise_on_unexpected_status=True
    )


def register(api: LiveApi, email: str) -> UserPublic:
    data = UserRegister(name="Grace", email=email, password=DEFAULT_PASSWORD)
    return expect(UserPublic, auth_register.sync(client=anonymous(api), body=data))


def log_in(api: LiveApi, email: str, password: str = DEFAULT_PASSWORD) -> TokenPair:
    form = LoginForm(username=email, password=password)
    return expect(TokenPair, auth_login.sync(client=anonymous(api), body=form))


def new_email() -> str:
    return f"py-{uuid.uuid4().hex[:12]}@Example.com"


def test_an_account_lives_through_register_login_update_refresh_and_logout(
    live_api: LiveApi,
) -> None:
    email = new_email()
    user = register(live_api, email)
    assert user.email == email.lower()
    assert not user.is_superuser

    tokens = log_in(live_api, email)
    assert tokens.token_type == "bearer"
    me = expect(UserPublic, users_read_me.sync(client=signed_in(live_api, tokens)))
    assert me.id == user.id

    changes = UserUpdateMe(name="Grace Hopper")
    updated = users_update_me.sync(client=signed_in(live_api, tokens), body=changes)
    assert expect(UserPublic, updated).name == "Grace Hopper"
    assert expect(UserPublic, updated).updated_at >= user.updated_at

    spent = RefreshRequest(refresh_token=tokens.refresh_token)
    refreshed = expect(TokenPair, auth_refresh.sync(client=anonymous(live_api), body=spent))
    assert refreshed.refresh_token != tokens.refresh_token
    me_again = users_read_me.sync(client=signed_in(live_api, refreshed))
    assert expect(UserPublic, me_again).name == "Grace Hopper"

    session = RefreshRequest(refresh_token=refreshed.refresh_token)
    logged_out = auth_logout.sync_detailed(client=anonymous(live_api), body=session)
    assert logged_out.status_code == 204
    after = auth_refresh.sync(client=anonymous(live_api), body=session)
    assert expect(ErrorMessage, after).detail == "Invalid or expired refresh token"


def test_an_admin_lists_users_as_typed_pages(live_api: LiveApi) -> None:
    user = register(live_api, new_email())
    admin_tokens = log_in(live_api, live_api.admin_email, live_api.admin_password)

    listed = users_list_users.sync(client=signed_in(live_api, admin_tokens), limit=100)

    page = expect(UsersPublic, listed)
    assert page.total >= 2
    assert all(isinstance(item, UserPublic) for item in page.items)
    assert user.id in {item.id for item in page.items}
    admins = [item for item in page.items if item.email == live_api.admin_email]
    assert [admin.is_superuser for admin in admins] == [True]


def test_documented_errors_arrive_as_their_models(live_api: LiveApi) -> None:
    email = new_email()
    register(live_api, email)

    # 409: the address is taken.
    again = UserRegister(name="Grace", email=email, password=DEFAULT_PASSWORD)
    taken = auth_register.sync(client=anonymous(live_api), body=again)
    assert expect(ErrorMessage, taken).detail == "A user with this email already exists"

    # 422: the password is too short; the error says where, never what was sent.
    short = UserRegister(name="Grace", email=new_email(), password="short")
    invalid = expect(
        HTTPValidationError, auth_register.sync(client=anonymous(live_api), body=short)
    )
    assert isinstance(invalid.detail, list)
    assert [error.loc for error in invalid.detail] == [["body", "password"]]
    assert "short" not in str(invalid.to_dict())

    # 401: a token the server never issued, with the challenge header the document lists.
    forged = AuthenticatedClient(
        base_url=live_api.base_url, token="not-a-token", raise_on_unexpected_status=True
    )
    refused = users_read_me.sync_detailed(client=forged)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert expect(ErrorMessage, refused.parsed).detail == "Could not validate credentials"

    # 401 at login, and 403 for a user on an admin route.
    wrong = LoginForm(username=email, password="not-the-password")
    failed_login = expect(
        OAuth2ErrorMessage, auth_login.sync(client=anonymous(live_api), body=wrong)
    )
    # The token endpoint's errors carry RFC 6749's code beside the usual detail.
    assert (failed_login.detail, failed_login.error) == (
        "Incorrect email or password",
        "invalid_grant",
    )
    forbidden = users_list_users.sync(client=signed_in(live_api, log_in(live_api, email)))
    assert expect(ErrorMessage, forbidden).detail == "Not enough privileges"


def test_an_admin_gives_a_role_and_takes_it_back(live_api: LiveApi) -> None:
    email = new_email()
    user = register(live_api, email)
    admin = signed_in(live_api, log_in(live_api, live_api.admin_email, live_api.admin_password))

    permissions = roles_list_permissions.sync(client=admin)
    assert isinstance(permissions, list)
    assert "users:read" in {expect(PermissionPublic, item).name for item in permissions}
    name = f"py-readers-{uuid.uuid4().hex[:8]}"
    role = expect(
        RolePublic,
        roles_create_role.sync(
            client=admin, body=RoleCreate(name=name, permissions=["users:read"])
        ),
    )
    assignment = RoleAssignment(roles=["member", name])
    held = expect(
        UserPublic, roles_assign_roles.sync(user_id=user.id, client=admin, body=assignment)
    )
    assert held.permissions == ["users:read"]
    reader = signed_in(live_api, log_in(live_api, email))
    expect(UsersPublic, users_list_users.sync(client=reader, limit=1))

    assert roles_delete_role.sync_detailed(role_id=role.id, client=admin).status_code == 204
    refused = users_list_users.sync(client=reader)
    assert expect(ErrorMessage, refused).detail == "Not enough privileges"
