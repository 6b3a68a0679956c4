"""The recovery feature's failures."""

from core.errors import BadRequestError


class InvalidAccountToken(BadRequestError):
    # One message for used, expired, tampered and unknown links: which one it was helps
    # nobody but someone guessing.
    default_detail = "Invalid or expired link"
