"""How operations are named in the OpenAPI document, which generated clients turn into methods."""

from enum import Enum

from fastapi.routing import APIRoute


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
