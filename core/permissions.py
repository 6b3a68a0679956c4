"""Permissions are code: each feature declares the ones it owns, in its `permissions.py`.

    # features/widgets/permissions.py
    from core.permissions import permission

    READ_ANY = permission("widgets:read_any", "Read every owner's widgets")

A permission is a name, `<feature>:<action>`, and a one-line description; roles (data, in the
users feature) grant them, routes require them (`require(...)` in features/users). Declaring
the same name twice with another description is a mistake and fails at import, so two
features cannot both claim one name. `features/registry.py` imports every feature's
`permissions.py`, so the list is complete before the app serves a request.
"""

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
NAME_MAX_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Permission:
    name: str
    description: str


_declared: dict[str, Permission] = {}


def permission(name: str, description: str) -> str:
    """Declare a permission and return its name, for routes and tests to use."""
    if len(name) > NAME_MAX_LENGTH or not _NAME.match(name):
        raise ValueError(f"a permission is named <feature>:<action> in lower case, not {name!r}")
    known = _declared.get(name)
    if known is not None and known.description != description:
        raise ValueError(f"{name} is declared twice, with two descriptions")
    _declared[name] = Permission(name, description)
    return name


def declared() -> list[Permission]:
    """Every permission declared so far, by name."""
    return sorted(_declared.values(), key=lambda declared: declared.name)


def is_declared(name: str) -> bool:
    return name in _declared
