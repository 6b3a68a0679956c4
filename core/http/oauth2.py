"""The OAuth2 token endpoint's request and its errors (RFC 6749, sections 4.3.2, 6 and 5.2).

`LoginForm` carries both grants a client sends to the token endpoint: the password grant
(`username`, `password`), which Swagger's Authorize button and every OAuth2 library send to
sign in, and the refresh grant (`grant_type=refresh_token`, `refresh_token`), which they send
to renew. It is a model read with `Annotated[LoginForm, Form()]`, so the request body has a
name of its own in the OpenAPI document and generated clients get a `LoginForm` type.

`TokenEndpointRoute` answers that route's errors as RFC 6749 asks, with `error` and
`error_description` beside the usual `detail` and the status codes clients already see:
client libraries (Authlib, requests-oauthlib, AppAuth) read `error` to raise their own
exceptions, so an expired session (`invalid_grant`) is told apart from a typo
(`invalid_request`).
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.data.types import OPAQUE_TOKEN_PATTERN
from core.errors import (
    DATABASE_UNAVAILABLE,
    AppError,
    ErrorMessage,
    error_responses,
    render_error,
)

# Every field is bounded before anything (the rate limiter, the database, bcrypt) sees it:
# an address is at most 254 characters (RFC 5321); a stored password at most 72 bytes, so a
# far longer one cannot match; scopes and client credentials are short by nature.
USERNAME_MAX_LENGTH = 254
PASSWORD_MAX_LENGTH = 1024
REFRESH_TOKEN_MAX_LENGTH = 512
SCOPE_MAX_LENGTH = 1024
CLIENT_FIELD_MAX_LENGTH = 255


def _published_form(schema: dict[str, Any]) -> None:
    """The form as the document shows it: what `fields_of_the_grant` checks (each grant's
    fields are required), and no nulls. A form has no null: an optional field is one left
    out, and a client sending "" for a published null would be refused."""
    schema.update(
        {
            "if": {
                "properties": {"grant_type": {"const": "refresh_token"}},
                "required": ["grant_type"],
            },
            "then": {"required": ["refresh_token"]},
            "else": {"required": ["username", "password"]},
        }
    )
    for field in schema["properties"].values():
        if "default" in field and field["default"] is None:
            del field["default"]
        choices = field.pop("anyOf", None)
        if choices is not None:
            (value,) = [choice for choice in choices if choice != {"type": "null"}]
            field.update(value)


class LoginForm(BaseModel):
    model_config = ConfigDict(json_schema_extra=_published_form)

    grant_type: Literal["password", "refresh_token"] | None = Field(
        default=None,
        description="`password` (the default) signs in; `refresh_token` trades a refresh token",
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=USERNAME_MAX_LENGTH,
        description="The account's email address (password grant)",
    )
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=PASSWORD_MAX_LENGTH,
        json_schema_extra={"format": "password"},
        description="Password grant",
    )
    refresh_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=REFRESH_TOKEN_MAX_LENGTH,
        description="Refresh grant: the refresh token to trade",
        json_schema_extra={"pattern": OPAQUE_TOKEN_PATTERN},
    )
    scope: str = Field(
        default="",
        max_length=SCOPE_MAX_LENGTH,
        description="Space-separated scopes; none are used",
    )
    client_id: str | None = Field(default=None, max_length=CLIENT_FIELD_MAX_LENGTH)
    client_secret: str | None = Field(
        default=None, max_length=CLIENT_FIELD_MAX_LENGTH, json_schema_extra={"format": "password"}
    )

    @model_validator(mode="after")
    def fields_of_the_grant(self) -> "LoginForm":
        if self.grant_type == "refresh_token":
            if self.refresh_token is None:
                raise ValueError("the refresh grant needs refresh_token")
        elif self.username is None or self.password is None:
            raise ValueError("the password grant needs username and password")
        return self


class TokenPair(BaseModel):
    """The token endpoint's answer (RFC 6749 section 5.1), whichever way a session began."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires")


class OAuth2ErrorMessage(ErrorMessage):
    """An error of the token endpoint: `detail` as everywhere, and RFC 6749's fields."""

    error: str = Field(description="RFC 6749 section 5.2 code, e.g. `invalid_grant`")
    error_description: str


# RFC 6749 section 5.2's code for each status this endpoint answers with; 429 and 503 (not a
# token endpoint case in RFC 6749) take the authorization endpoint's `temporarily_unavailable`.
_CODES = {400: "invalid_request", 401: "invalid_grant", 429: "temporarily_unavailable"}


def _code(status: int) -> str:
    return _CODES.get(status, "temporarily_unavailable" if status >= 500 else "invalid_request")


def _with_oauth2_fields(response: Response, error: str, description: str = "") -> Response:
    """The response, its body with RFC 6749's fields added; the description defaults to the
    body's own `detail` when that is text."""
    body = json.loads(bytes(response.body))
    detail = body.get("detail")
    described = description or (detail if isinstance(detail, str) else "the request failed")
    body.update(error=error, error_description=described)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(
        json.dumps(body), status_code=response.status_code, headers=headers, media_type=None
    )


class TokenEndpointRoute(APIRoute):
    """A route whose errors carry RFC 6749 section 5.2's `error` and `error_description`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as invalid:
                response = await render_error(request, invalid)
                unsupported = any(
                    tuple(item.get("loc", ()))[-1:] == ("grant_type",) for item in invalid.errors()
                )
                if unsupported:
                    return _with_oauth2_fields(
                        response,
                        "unsupported_grant_type",
                        "grant_type is password or refresh_token",
                    )
                return _with_oauth2_fields(response, "invalid_request", "the request is malformed")
            except (AppError, *DATABASE_UNAVAILABLE) as failed:
                response = await render_error(request, failed)
                return _with_oauth2_fields(response, _code(response.status_code))

        return handler


def token_endpoint_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """`error_responses` for the token endpoint: its error bodies carry RFC 6749's fields, and
    a malformed request's 422 does too."""
    responses = error_responses(*errors)
    for entry in responses.values():
        entry["model"] = OAuth2ErrorMessage
    responses[422] = {"model": OAuth2ValidationError, "description": "Validation Error"}
    return responses


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class OAuth2ValidationError(BaseModel):
    """A malformed token request: the usual validation errors, and RFC 6749's fields
    (`invalid_request`, or `unsupported_grant_type`)."""

    detail: list[ValidationIssue]
    error: str
    error_description: str
