"""The auth feature's failures."""

from core.errors import BadRequestError, UnauthorizedError


class InvalidCredentials(UnauthorizedError):
    # One message for unknown email, wrong password and inactive account: it must not tell
    # an attacker which of the three it was.
    default_detail = "Incorrect email or password"


class InvalidRefreshToken(UnauthorizedError):
    default_detail = "Invalid or expired refresh token"


class InvalidAccountToken(BadRequestError):
    # One message for used, expired, tampered and unknown links: which one it was helps
    # nobody but someone guessing.
    default_detail = "Invalid or expired link"
