"""`OwnedRows` (features/users/dependencies.py): whose rows a route reaches, from the caller's
permissions, and which permissions each route lists in OpenAPI.

The scaffold's generated tests run it inside a real feature (tests/test_scaffold.py); here
it stands alone, on probe routes, with the users feature's permissions standing in for a
feature's `read_any` (users:read) and `manage_any` (users:manage).
"""

import dataclasses
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.testclient import TestClient

from core.permissions import Reach
from features.users.dependencies import OwnedRows, require
from features.users.models import AuthenticatedUser
from features.users.permissions import MANAGE, MANAGE_ROLES, READ
from tests.conftest import Account

PROBE = "/api/v1/reach-probe"
SESSION, API_KEY = "OAuth2PasswordBearer", "APIKey"
owned = OwnedRows(read_any=READ, manage_any=MANAGE)


def probe_router() -> APIRouter:
    router = APIRouter(prefix="/reach-probe", tags=["reach-probe"])

    @router.get("")
    async def reach_to_read(reach: Annotated[Reach, owned.read]) -> dict[str, Any]:
        return dataclasses.asdict(reach)

    @router.delete("")
    async def reach_to_change(reach: Annotated[Reach, owned.change]) -> dict[str, Any]:
        return dataclasses.asdict(reach)

    @router.get("/managers")
    async def reach_of_a_role_manager(
        _: Annotated[AuthenticatedUser, require(MANAGE_ROLES)],
        reach: Annotated[Reach, owned.read],
    ) -> dict[str, Any]:
        return dataclasses.asdict(reach)

    return router


@pytest.fixture(autouse=True)
def probed(app: FastAPI) -> None:
    app.include_router(probe_router(), prefix="/api/v1")


@pytest.fixture
def holder_of(
    client: TestClient, superuser: Account, make_account: Callable[..., Account]
) -> Callable[[str], Account]:
    def make(permission: str) -> Account:
        role = {"name": f"holds-{uuid.uuid4().hex[:12]}", "permissions": [permission]}
        response = client.post("/api/v1/roles", headers=superuser.headers, json=role)
        assert response.status_code == 201, response.text
        return make_account(roles=[role["name"]])

    return make


def reaches(client: TestClient, account: Account) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the caller reaches on a reading route, and on a changing one."""
    to_read = client.get(PROBE, headers=account.headers)
    to_change = client.delete(PROBE, headers=account.headers)
    assert (to_read.status_code, to_change.status_code) == (200, 200), to_read.text
    return to_read.json(), to_change.json()


def test_a_member_reaches_only_their_own_rows(client: TestClient, account: Account) -> None:
    mine = {"caller_id": account.id, "reads_any": False, "changes_any": False}
    assert reaches(client, account) == (mine, mine)


def test_read_any_reaches_every_owners_rows_to_read_only(
    client: TestClient, holder_of: Callable[[str], Account]
) -> None:
    reader = holder_of(READ)
    seen = {"caller_id": reader.id, "reads_any": True, "changes_any": False}
    assert reaches(client, reader) == (seen, seen)


def test_manage_any_reaches_every_owners_rows_to_read_and_change(
    client: TestClient, holder_of: Callable[[str], Account], superuser: Account
) -> None:
    for account in (holder_of(MANAGE), superuser):
        everything = {"caller_id": account.id, "reads_any": True, "changes_any": True}
        assert reaches(client, account) == (everything, everything)


def test_nobody_signed_out_reaches_anything(client: TestClient) -> None:
    assert client.get(PROBE).status_code == 401
    assert client.get(PROBE, headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_each_route_lists_the_permissions_that_widen_it(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    # Either credential (a session's token, an API key) as it is, or holding a permission
    # that widens the route: alternatives, since every signed-in account may call it.
    plain: list[dict[str, list[str]]] = [{SESSION: []}, {API_KEY: []}]
    assert paths["/api/v1/users/me"]["get"]["security"] == plain  # not widened: unchanged
    assert paths[PROBE]["get"]["security"] == [
        *plain,
        {SESSION: [READ]},
        {API_KEY: [READ]},
        {SESSION: [MANAGE]},
        {API_KEY: [MANAGE]},
    ]
    assert paths[PROBE]["delete"]["security"] == [*plain, {SESSION: [MANAGE]}, {API_KEY: [MANAGE]}]
    # A permission the route requires stays in every alternative.
    assert paths[f"{PROBE}/managers"]["get"]["security"] == [
        {SESSION: [MANAGE_ROLES]},
        {API_KEY: [MANAGE_ROLES]},
        {SESSION: [MANAGE_ROLES, READ]},
        {API_KEY: [MANAGE_ROLES, READ]},
        {SESSION: [MANAGE_ROLES, MANAGE]},
        {API_KEY: [MANAGE_ROLES, MANAGE]},
    ]


def test_a_permission_nobody_declares_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match="no feature declares"):
        OwnedRows(read_any="nobody:read_any", manage_any=MANAGE)
