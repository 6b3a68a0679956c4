"""The one list of installed features.

Adding a feature is one line here. The app mounts each feature's `router` and Alembic sees
each feature's tables through `import_models()`; a test fails when a folder under
`features/` is missing from this list.
"""

import importlib
from types import ModuleType

INSTALLED_FEATURES: tuple[str, ...] = (
    "users",
    "auth",
)


def import_models() -> list[ModuleType]:
    """Import every feature's models so their tables join the shared metadata."""
    return [importlib.import_module(f"features.{name}.models") for name in INSTALLED_FEATURES]


def import_routers() -> list[ModuleType]:
    return [importlib.import_module(f"features.{name}.router") for name in INSTALLED_FEATURES]
