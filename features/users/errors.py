"""The users feature's failures, each with the status it always gets."""

from core.errors import BadRequestError, ConflictError, NotFoundError, UnauthorizedError


class UserNotFound(NotFoundError):
    default_detail = "User not found"


class EmailTaken(ConflictError):
    default_detail = "A user with this email already exists"
    # The unique index is the arbiter when two requests race for one address.
    constraint = "uq_users_email"


class LastSuperuser(ConflictError):
    default_detail = "The last active superuser cannot be removed or demoted"


class WrongPassword(BadRequestError):
    default_detail = "Current password is incorrect"


class InvalidAccessToken(UnauthorizedError):
    default_detail = "Could not validate credentials"
