"""How the OpenAPI document names operations (generated clients turn the names into methods)
and what it says about permissions."""

from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from core import permissions


def operation_id(route: APIRoute) -> str:
    """`<tag>-<route function name>`: `auth-login`, `users-read_me`, `health-ready`.

    Passed once as the app's `generate_unique_id_function`, so every route gets it, those of
    features added later included. FastAPI's default id repeats the path and the method
    (`read_me_api_v1_users_me_get`), and generated clients name their methods after it; this
    one reads like the code and survives a change of path or prefix. The generated clients
    turn it into `authLogin` (TypeScript) and `auth_login` (Python). A route without a tag is
    named after its function alone; `tests/test_openapi.py` fails on a duplicate.
    """
    if not route.tags:
        return route.name
    tag = route.tags[0]
    return f"{tag.value if isinstance(tag, Enum) else tag}-{route.name}"


def publish_permissions(app: FastAPI) -> None:
    """The OAuth2 scheme's scopes are the declared permissions, each with its description:
    routes that `require(...)` one list it as their security requirement, and /docs and the
    generated clients show what each permission means. Call after every feature's
    permissions are imported."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = build()
        scopes = {declared.name: declared.description for declared in permissions.declared()}
        for scheme in document.get("components", {}).get("securitySchemes", {}).values():
            flow = scheme.get("flows", {}).get("password")
            if flow is not None:
                flow["scopes"] = scopes
        return document

    app.openapi = openapi  # type: ignore[method-assign]
