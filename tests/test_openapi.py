"""The OpenAPI document is the contract clients and /docs read: every operation explains
itself and its failures, and no schema carries a password hash."""

from typing import Any

from fastapi import FastAPI

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
