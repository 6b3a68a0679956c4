"""The auth feature's failures."""

from core.errors import UnauthorizedError


class InvalidCredentials(UnauthorizedError):
    # One message for unknown email, wrong password and inactive account: it must not tell
    # an attacker which of the three it was.
    default_detail = "Incorrect email or password"
