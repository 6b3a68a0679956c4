"""The one list of installed features.

Adding a feature is one line here. The app mounts each feature's `router`, Alembic sees each
feature's tables through `import_models()`, the permissions a feature declares in its
optional `permissions.py` are known once `import_permissions()` has run (`admin` grants every
one of them), and so are the jobs of its optional `jobs.py` (periodic ones included) once
`import_jobs()` has; a test fails when a folder under `features/` is missing from this list. The
features' reactions to one another are wired in `connect_features()`, which every entry
point calls (the app, the job worker).
"""

import importlib
import importlib.util
from types import ModuleType

INSTALLED_FEATURES: tuple[str, ...] = (
    "users",
    "auth",
    "recovery",
    "roles",
    "api_keys",
    "audit",
    "oidc",
)


# Tables core itself owns, imported with the features' so Alembic sees them too.
CORE_MODELS: tuple[str, ...] = ("core.data.row_counts", "core.data.audit")


def import_models() -> list[ModuleType]:
    """Import every table model (core's and each feature's) so they join the shared metadata."""
    names = (*CORE_MODELS, *(f"features.{name}.models" for name in INSTALLED_FEATURES))
    return [importlib.import_module(name) for name in names]


def import_permissions() -> list[ModuleType]:
    """Import every feature's `permissions.py` (those that have one), declaring them all."""
    names = [f"features.{name}.permissions" for name in INSTALLED_FEATURES]
    return [importlib.import_module(name) for name in names if importlib.util.find_spec(name)]


def import_jobs() -> list[ModuleType]:
    """Import every feature's `jobs.py` (those that have one): a periodic job nobody enqueues
    is declared only there, and the worker and the in-process runner schedule what is."""
    names = [f"features.{name}.jobs" for name in INSTALLED_FEATURES]
    return [importlib.import_module(name) for name in names if importlib.util.find_spec(name)]


def import_routers() -> list[ModuleType]:
    return [importlib.import_module(f"features.{name}.router") for name in INSTALLED_FEATURES]


def connect_features() -> None:
    """Every reaction of one feature to another, in one place, so none hides in an import.

    The recovery feature mails, from jobs enqueued in the transaction of the change: a
    verification link to an address nobody has confirmed yet (a sign-up, an email change), a
    link that puts it back to the address an account left, and a notice to an account whose
    password was replaced. A Bearer credential that starts `fak_` is an API key, checked by
    the api_keys feature.
    """
    from features.api_keys import service as api_keys_service
    from features.recovery import service as recovery_service
    from features.users import authority as users_authority
    from features.users import service as users_service

    users_service.new_address.connect(recovery_service.send_verification)
    users_service.address_replaced.connect(recovery_service.send_address_restore_link)
    users_service.password_replaced.connect(recovery_service.send_password_notice)
    users_authority.credentials.connect(api_keys_service.KEY_PREFIX, api_keys_service.authenticate)
