"""One error hierarchy for the whole app, and the one place that turns errors into HTTP.

Services raise these (or subclasses with a domain name); they never raise HTTPException, so
the same failure gets the same status everywhere.
"""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

logger = logging.getLogger("app.errors")

_ERRORS_BY_CONSTRAINT: dict[str, type["AppError"]] = {}


def error_for_constraint(name: str | None) -> type["AppError"] | None:
    """The error a violation of constraint `name` means, if some error class claims it."""
    return None if name is None else _ERRORS_BY_CONSTRAINT.get(name)


class AppError(Exception):
    status_code: ClassVar[int] = 400
    default_detail: ClassVar[str] = "Bad request"
    # Headers every response for this error carries, as OpenAPI header objects: documented
    # with the status, so clients (and the conformance tests) know to expect them.
    response_headers: ClassVar[dict[str, dict[str, Any]]] = {}
    # The database constraint whose violation means this error (`uq_users_email`, named by
    # core/data/db.py's naming convention). A unit of work that violates it raises this error
    # instead, wherever the violating write was flushed: at the commit, or earlier by a hook
    # reaction's query (core/data/db.py). Services need no `except IntegrityError` of their own.
    constraint: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("constraint")
        if name is None:
            return
        known = _ERRORS_BY_CONSTRAINT.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"{known.__qualname__} and {cls.__qualname__} both claim {name}")
        _ERRORS_BY_CONSTRAINT[name] = cls

    def __init__(self, detail: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.default_detail
        self.headers = headers
        super().__init__(self.detail)


class BadRequestError(AppError):
    status_code = 400


class UnauthorizedError(AppError):
    status_code = 401
    default_detail = "Not authenticated"
    response_headers: ClassVar[dict[str, dict[str, Any]]] = {
        "WWW-Authenticate": {
            "description": "How to authenticate: with a Bearer access token",
            "required": True,
            "schema": {"type": "string", "enum": ["Bearer"]},
        }
    }

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(AppError):
    status_code = 403
    default_detail = "Not enough privileges"


class NotFoundError(AppError):
    status_code = 404
    default_detail = "Not found"


class ConflictError(AppError):
    status_code = 409
    default_detail = "Conflict"


class PayloadTooLargeError(AppError):
    status_code = 413
    default_detail = "Request body too large"


class TooManyRequestsError(AppError):
    status_code = 429
    default_detail = "Too many requests, try again later"
    response_headers: ClassVar[dict[str, dict[str, Any]]] = {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    }

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})


class ServiceUnavailableError(AppError):
    status_code = 503
    default_detail = "Service temporarily unavailable"


class ErrorMessage(BaseModel):
    detail: str


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a route can raise, so clients see them in /docs and
    generated clients type them. Errors that share a status share its entry, each message
    listed in its description."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = responses.setdefault(
            error.status_code, {"model": ErrorMessage, "description": error.default_detail}
        )
        if error.default_detail not in entry["description"].split(" | "):
            entry["description"] += f" | {error.default_detail}"
        if error.response_headers:
            entry.setdefault("headers", {}).update(error.response_headers)
    return responses


class MalformedRequestError(BadRequestError):
    # Never raised here: the body-size middleware answers it for a bad Content-Length and
    # FastAPI's body parser for a body it cannot decode. The class documents the answer.
    default_detail = "Malformed request: body or Content-Length cannot be read"


# What any API route can answer, whatever it does, from the machinery every request passes
# through: a request the body-size middleware or the body parser refuses (400, 413), and a
# database that cannot be reached (503). Redis never gives a 503: without it the cache reads
# the database and rate limits are counted per process.
# main.py documents these on every feature router it mounts; a route's own entry for the
# same status wins, with the same body model.
SHARED_API_RESPONSES = error_responses(
    MalformedRequestError, PayloadTooLargeError, ServiceUnavailableError
)


# Errors that mean "the database is not reachable right now", not "the request is wrong".
DATABASE_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def _json(status_code: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


async def _app_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AppError)
    return _json(error.status_code, error.detail, error.headers)


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # Pydantic echoes the rejected value as `input`: that may be a password, so it never leaves.
    details = [
        {key: value for key, value in item.items() if key not in ("input", "url")}
        for item in error.errors()
    ]
    return _json(422, jsonable_encoder(details))


async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    logger.warning("database unavailable: %s", type(error).__name__)
    return _json(503, ServiceUnavailableError.default_detail)


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=error)
    return _json(500, "Internal server error")


async def render_error(request: Request, error: Exception) -> JSONResponse:
    """The response the app's handlers give `error` (an AppError, a validation error or a
    database outage), for a route that adds to it (core/http/oauth2.py)."""
    if isinstance(error, AppError):
        return await _app_error(request, error)
    if isinstance(error, RequestValidationError):
        return await _validation_error(request, error)
    return await _database_unavailable(request, error)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error_type in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error_type, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
