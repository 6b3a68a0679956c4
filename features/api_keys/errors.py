"""The API keys feature's failures."""

from core.errors import NotFoundError


class ApiKeyNotFound(NotFoundError):
    # Another account's key looks exactly like a missing one: ids leak nothing.
    default_detail = "API key not found"
