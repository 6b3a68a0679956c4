"""How the OpenAPI document names operations (generated clients turn the names into methods)
and what it says about permissions."""

from collections.abc import Iterator
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

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


class WidenedBy:
    """Base of a FastAPI dependency (a callable instance) that lets every authenticated caller
    through and does more for holders of `permissions`, such as reaching every owner's rows
    (features/users/dependencies.py: `OwnedRows`).

    `publish_permissions` lists each of them as an alternative security requirement of the
    routes that use it, beside each plain one (`[{scheme: []}, {scheme: [permission]}, ...]`:
    either will do), so /docs and the generated clients show which permissions change what
    a route does without any route requiring them.
    """

    def __init__(self, *permissions: str) -> None:
        self.widening_permissions = permissions


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def _widening_permissions(dependant: Dependant) -> list[str]:
    found: list[str] = []
    for each in _dependants(dependant):
        if isinstance(each.call, WidenedBy):
            found += [name for name in each.call.widening_permissions if name not in found]
    return found


def _publish_widening(app: FastAPI, document: dict[str, Any]) -> None:
    """Beside each requirement an operation has, the same with each widening permission."""
    # Route contexts, not app.routes: a route included through a router has its full path
    # and its router's dependencies only there.
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        widening = _widening_permissions(dependant) if isinstance(dependant, Dependant) else []
        operations = document["paths"].get(context.path_format, {}) if widening else {}
        for method in sorted(context.methods or ()):
            operation = operations.get(method.lower())
            if operation is None:  # not widened, or left out of the schema
                continue
            plain = operation.get("security", [])
            operation["security"] = [
                *plain,
                *(
                    {scheme: [*scopes, name]}
                    for name in widening
                    for requirement in plain
                    for scheme, scopes in requirement.items()
                    if name not in scopes
                ),
            ]


def publish_permissions(app: FastAPI) -> None:
    """The OAuth2 scheme's scopes are the declared permissions, each with its description:
    routes that `require(...)` one list it as their security requirement, routes whose
    dependencies are `WidenedBy` some list them as alternatives, and /docs and the generated
    clients show what each permission means. Call after every feature's permissions are
    imported."""
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
        _publish_widening(app, document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def links_to(
    status_code: int, targets: dict[str, dict[str, str]]
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links from one response of a route to the operations its answer feeds, for the
    route's `responses`: `links_to(201, {"api-keys-revoke_key": {"key_id": "$response.body#/id"}})`.
    Each target is an operation id and where its parameters come from (runtime expressions),
    so tools that follow links (schemathesis's stateful phase, some clients) chain the calls."""
    return {
        status_code: {
            "links": {
                target: {"operationId": target, "parameters": parameters}
                for target, parameters in targets.items()
            }
        }
    }
