"""Permissions are code: each feature declares the ones it owns, in its `permissions.py`.

    # features/widgets/permissions.py
    from core.permissions import permission

    READ_ANY = permission("widgets:read_any", "Read every owner's widgets")

A permission is a name, `<feature>:<action>`, and a one-line description; roles (data, in the
users feature) grant them, routes require them (`require(...)` in features/users). Declaring
the same name twice with another description is a mistake and fails at import, so two
features cannot both claim one name. `features/registry.py` imports every feature's
`permissions.py`, so the list is complete before the app serves a request.

A feature whose rows each belong to one account uses two of them to say who reaches whose
rows (`Reach`, below, and `OwnedRows` in features/users/dependencies.py):

    READ_ANY = permission("widgets:read_any", "Read every owner's widgets")
    MANAGE_ANY = permission("widgets:manage_any", "Change and delete every owner's widgets")
"""

import re
import uuid
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


@dataclass(frozen=True, slots=True)
class Reach:
    """Whose rows a caller may act on, in a feature whose rows each belong to one owner.

    The caller's own rows, always; every owner's when the caller's permissions say so (the
    feature's `read_any` to read them, `manage_any` to change and delete them too). Built per
    request from the caller's permissions (`OwnedRows` in features/users/dependencies.py);
    a service asks it about the owner of each row it touches.
    """

    caller_id: uuid.UUID
    reads_any: bool = False
    changes_any: bool = False

    def __post_init__(self) -> None:
        if self.changes_any and not self.reads_any:
            raise ValueError("whoever may change every owner's rows may read them too")

    def may_read(self, owner_id: uuid.UUID) -> bool:
        return self.reads_any or owner_id == self.caller_id

    def may_change(self, owner_id: uuid.UUID) -> bool:
        return self.changes_any or owner_id == self.caller_id
