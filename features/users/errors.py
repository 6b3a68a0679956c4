"""The users feature's failures, each with the status it always gets."""

from core.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
)


class UserNotFound(NotFoundError):
    default_detail = "User not found"


class EmailTaken(ConflictError):
    default_detail = "A user with this email already exists"
    # The unique index is the arbiter when two requests race for one address.
    constraint = "uq_users_email"


class LastRoleManager(ConflictError):
    # Someone must always be able to hand out roles: nothing but SQL would bring one back.
    default_detail = "No change may leave no active account that can manage roles"


class Outranked(ForbiddenError):
    # A support agent with users:manage must not be able to take over an admin (reset its
    # password, change its address) or hand out more than they hold.
    default_detail = "The account or role has permissions you do not hold"


class SessionRequired(ForbiddenError):
    default_detail = "An API key cannot do this: sign in"


class UnknownRole(BadRequestError):
    default_detail = "No role has that name"


class WrongPassword(BadRequestError):
    default_detail = "Current password is incorrect"


class NoPasswordSet(BadRequestError):
    default_detail = (
        "This account has no password yet: set one through password recovery "
        "(POST /api/v1/auth/password-recovery)"
    )


class InvalidRefreshToken(UnauthorizedError):
    default_detail = "Invalid or expired refresh token"


class SessionNotFound(NotFoundError):
    # Another account's session looks exactly like a missing one.
    default_detail = "Session not found"


class InvalidAccessToken(UnauthorizedError):
    default_detail = "Could not validate credentials"
