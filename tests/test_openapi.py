"""The OpenAPI document is the contract clients and /docs read: every operation explains
itself and its failures, and no schema carries a password hash."""

import re
from enum import Enum
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from core.errors import UnauthorizedError, error_responses
from core.http import openapi
from features.users.errors import EmailTaken, LastRoleManager, UserNotFound

PUBLIC_OPERATIONS = {
    ("get", "/health"),
    ("get", "/health/ready"),
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/password-recovery"),
    ("post", "/api/v1/auth/reset-password"),
    ("post", "/api/v1/auth/verify-email"),
    ("post", "/api/v1/auth/request-verification"),
    ("post", "/api/v1/auth/restore-email"),
    ("get", "/api/v1/auth/oidc/providers"),
    ("get", "/api/v1/auth/oidc/{provider}/authorize"),
    ("get", "/api/v1/auth/oidc/{provider}/callback"),
    ("post", "/api/v1/auth/oidc/exchange"),
}
# The steps a browser navigates through (OpenID Connect's authorize and callback): their
# answer is a redirect, not JSON.
BROWSER_REDIRECTS = {
    ("get", "/api/v1/auth/oidc/{provider}/authorize"),
    ("get", "/api/v1/auth/oidc/{provider}/callback"),
}


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_has_a_summary_a_tag_and_a_success_response(app: FastAPI) -> None:
    for method, path, operation in operations(app):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        successes = [code for code in operation["responses"] if code.startswith("2")]
        if (method, path) in BROWSER_REDIRECTS:
            assert not successes, where
            assert "302" in operation["responses"], where
            continue
        assert successes, where
        for code in successes:
            if code != "204":
                assert "application/json" in operation["responses"][code]["content"], where


def test_protected_operations_document_401_and_accept_a_bearer_token(app: FastAPI) -> None:
    for method, path, operation in operations(app):
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        where = f"{method.upper()} {path}"
        assert "401" in operation["responses"], where
        assert operation.get("security"), where


def test_admin_operations_document_403(app: FastAPI) -> None:
    for method, path, operation in operations(app):
        if path.startswith("/api/v1/users") and not path.startswith("/api/v1/users/me"):
            assert "403" in operation["responses"], f"{method.upper()} {path}"


def test_no_schema_exposes_a_password_hash_or_token_version(app: FastAPI) -> None:
    document = str(app.openapi())
    assert "hashed_password" not in document
    assert "token_version" not in document


# --- operation ids: what generated clients name their methods after ---------------------------

# `<tag>-<function name>`: lower-case words, the tag may hold dashes (`blog-posts`).
OPERATION_ID = re.compile(r"^[a-z][a-z0-9-]*-[a-z][a-z0-9_]*$")
# What FastAPI's default id looks like: the function name, the path, the method.
DEFAULT_STYLE = re.compile(r"_api_v\d+_|_(get|put|post|patch|delete|head|options)$")


def operation_id_problems(document: dict[str, Any]) -> list[str]:
    """Every operation id that is missing, duplicated, path-derived or not `<tag>-<name>`."""
    problems = []
    seen: dict[str, str] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            operation_id = operation.get("operationId", "")
            if operation_id in seen:
                problems.append(f"{where}: {operation_id!r} is also {seen[operation_id]}")
            seen[operation_id] = where
            if DEFAULT_STYLE.search(operation_id) or not OPERATION_ID.match(operation_id):
                problems.append(f"{where}: {operation_id!r} is not <tag>-<function name>")
            elif not operation_id.startswith(f"{operation['tags'][0]}-"):
                problems.append(f"{where}: {operation_id!r} does not start with its tag")
    return problems


def test_every_operation_id_is_unique_and_reads_tag_then_function(app: FastAPI) -> None:
    assert operation_id_problems(app.openapi()) == []


def test_operation_ids_are_the_ones_clients_were_generated_with(app: FastAPI) -> None:
    ids = {
        (method, path): operation["operationId"]
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    }
    assert ids[("post", "/api/v1/auth/login")] == "auth-login"
    assert ids[("get", "/api/v1/users/me")] == "users-read_me"
    assert ids[("delete", "/api/v1/users/{user_id}")] == "users-delete_user"
    assert ids[("get", "/health/ready")] == "health-ready"


def test_the_check_catches_default_and_duplicate_ids() -> None:
    """The check above could pass by accident; here it meets what it must refuse."""
    app = FastAPI()  # FastAPI's own id generator
    first, second = APIRouter(tags=["things"]), APIRouter(tags=["things"])

    @first.get("/things")
    async def list_things() -> list[str]:
        return []

    @second.get("/other-things", name="list_things")
    async def list_other_things() -> list[str]:
        return []

    app.include_router(first, prefix="/api/v1")
    assert operation_id_problems(app.openapi()) == [
        "GET /api/v1/things: 'list_things_api_v1_things_get' is not <tag>-<function name>"
    ]

    app = FastAPI(generate_unique_id_function=openapi.operation_id)
    app.include_router(first)
    app.include_router(second)
    with pytest.warns(UserWarning, match="Duplicate Operation ID"):
        document = app.openapi()
    assert operation_id_problems(document) == [
        "GET /other-things: 'things-list_things' is also GET /things"
    ]


class Colour(Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("tags", "expected"), [(["auth"], "auth-login"), ([Colour.RED], "red-login"), ([], "login")]
)
def test_operation_id_is_the_first_tag_and_the_route_name(
    tags: list[str | Enum], expected: str
) -> None:
    async def login() -> None:
        return None

    assert openapi.operation_id(APIRoute("/login", login, tags=tags)) == expected


def test_the_login_form_has_a_schema_name_of_its_own(app: FastAPI) -> None:
    document = app.openapi()
    body = document["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]
    schema = body["application/x-www-form-urlencoded"]["schema"]
    assert schema == {"$ref": "#/components/schemas/LoginForm"}
    assert not [name for name in document["components"]["schemas"] if name.startswith("Body_")]


# --- errors every API route can meet ----------------------------------------------------------


def test_every_api_operation_documents_the_errors_of_the_shared_machinery(app: FastAPI) -> None:
    def body(model: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}

    for method, path, operation in operations(app):
        if not path.startswith("/api/"):
            continue
        for status in ("400", "413", "503"):
            # The token endpoint's own 503 carries RFC 6749's fields too (an ErrorMessage
            # with more); the middleware's 400 and 413 never reach it.
            expected = (
                body("OAuth2ErrorMessage")
                if (path, status) == ("/api/v1/auth/login", "503")
                else body("ErrorMessage")
            )
            assert operation["responses"][status]["content"] == expected, (method, path, status)


def test_documented_errors_say_which_headers_come_with_them(app: FastAPI) -> None:
    for method, path, operation in operations(app):
        responses = operation["responses"]
        if "401" in responses:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"], (method, path)
        if "429" in responses:
            assert responses["429"]["headers"]["Retry-After"]["required"], (method, path)


def test_errors_sharing_a_status_share_its_entry() -> None:
    responses = error_responses(UserNotFound, EmailTaken, LastRoleManager, UnauthorizedError)
    assert sorted(responses) == [401, 404, 409]
    assert responses[409]["description"] == (
        f"{EmailTaken.default_detail} | {LastRoleManager.default_detail}"
    )
    assert responses[401]["headers"] == UnauthorizedError.response_headers
    assert "headers" not in responses[404]


def test_every_api_read_documents_its_conditional_304(app: FastAPI) -> None:
    for method, path, operation in operations(app):
        if (method, path) in BROWSER_REDIRECTS:
            continue  # a redirect, never cached (Cache-Control: no-store)
        if method == "get" and path.startswith("/api/v1"):
            assert "304" in operation["responses"], path
