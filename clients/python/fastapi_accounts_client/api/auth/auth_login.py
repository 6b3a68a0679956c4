from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_message import ErrorMessage
from ...models.login_form import LoginForm
from ...models.o_auth_2_error_message import OAuth2ErrorMessage
from ...models.o_auth_2_validation_error import OAuth2ValidationError
from ...models.token_pair import TokenPair
from ...types import Response


def _get_kwargs(
    *,
    body: LoginForm,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/v1/auth/login",
    }

    _kwargs["data"] = body.to_dict()
    headers["Content-Type"] = "application/x-www-form-urlencoded"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair | None:
    if response.status_code == 200:
        response_200 = TokenPair.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = ErrorMessage.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = OAuth2ErrorMessage.from_dict(response.json())

        return response_401

    if response.status_code == 413:
        response_413 = ErrorMessage.from_dict(response.json())

        return response_413

    if response.status_code == 422:
        response_422 = OAuth2ValidationError.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = OAuth2ErrorMessage.from_dict(response.json())

        return response_429

    if response.status_code == 503:
        response_503 = OAuth2ErrorMessage.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: LoginForm,
) -> Response[ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair]:
    """Sign in, or refresh, at the OAuth2 token endpoint

     The OAuth2 token endpoint. The password grant (`username` is the email) signs in; the
    refresh grant (`grant_type=refresh_token`, RFC 6749 section 6) trades a refresh token for
    a new pair exactly as `POST /auth/refresh` does, spent token and replay detection
    included. Errors carry RFC 6749's `error` (`invalid_grant`: wrong credentials or a refresh
    token that is spent, expired or revoked) beside `detail`.

    Args:
        body (LoginForm):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    body: LoginForm,
) -> ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair | None:
    """Sign in, or refresh, at the OAuth2 token endpoint

     The OAuth2 token endpoint. The password grant (`username` is the email) signs in; the
    refresh grant (`grant_type=refresh_token`, RFC 6749 section 6) trades a refresh token for
    a new pair exactly as `POST /auth/refresh` does, spent token and replay detection
    included. Errors carry RFC 6749's `error` (`invalid_grant`: wrong credentials or a refresh
    token that is spent, expired or revoked) beside `detail`.

    Args:
        body (LoginForm):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: LoginForm,
) -> Response[ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair]:
    """Sign in, or refresh, at the OAuth2 token endpoint

     The OAuth2 token endpoint. The password grant (`username` is the email) signs in; the
    refresh grant (`grant_type=refresh_token`, RFC 6749 section 6) trades a refresh token for
    a new pair exactly as `POST /auth/refresh` does, spent token and replay detection
    included. Errors carry RFC 6749's `error` (`invalid_grant`: wrong credentials or a refresh
    token that is spent, expired or revoked) beside `detail`.

    Args:
        body (LoginForm):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: LoginForm,
) -> ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair | None:
    """Sign in, or refresh, at the OAuth2 token endpoint

     The OAuth2 token endpoint. The password grant (`username` is the email) signs in; the
    refresh grant (`grant_type=refresh_token`, RFC 6749 section 6) trades a refresh token for
    a new pair exactly as `POST /auth/refresh` does, spent token and replay detection
    included. Errors carry RFC 6749's `error` (`invalid_grant`: wrong credentials or a refresh
    token that is spent, expired or revoked) beside `detail`.

    Args:
        body (LoginForm):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorMessage | OAuth2ErrorMessage | OAuth2ValidationError | TokenPair
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
