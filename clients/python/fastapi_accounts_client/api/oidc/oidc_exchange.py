from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.code_exchange import CodeExchange
from ...models.error_message import ErrorMessage
from ...models.http_validation_error import HTTPValidationError
from ...models.token_pair import TokenPair
from ...types import Response


def _get_kwargs(
    *,
    body: CodeExchange,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/v1/auth/oidc/exchange",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorMessage | HTTPValidationError | TokenPair | None:
    if response.status_code == 200:
        response_200 = TokenPair.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = ErrorMessage.from_dict(response.json())

        return response_400

    if response.status_code == 413:
        response_413 = ErrorMessage.from_dict(response.json())

        return response_413

    if response.status_code == 422:
        response_422 = HTTPValidationError.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = ErrorMessage.from_dict(response.json())

        return response_429

    if response.status_code == 503:
        response_503 = ErrorMessage.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorMessage | HTTPValidationError | TokenPair]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: CodeExchange,
) -> Response[ErrorMessage | HTTPValidationError | TokenPair]:
    """Trade a sign-in's one-time code for tokens

     The `code` the callback put on your redirect URI and the PKCE `code_verifier` of the
    authorize step, once, within a minute: the usual token pair, a session like any other.
    A missing or wrong verifier is a 400 and spends the code.

    Args:
        body (CodeExchange):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorMessage | HTTPValidationError | TokenPair]
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
    body: CodeExchange,
) -> ErrorMessage | HTTPValidationError | TokenPair | None:
    """Trade a sign-in's one-time code for tokens

     The `code` the callback put on your redirect URI and the PKCE `code_verifier` of the
    authorize step, once, within a minute: the usual token pair, a session like any other.
    A missing or wrong verifier is a 400 and spends the code.

    Args:
        body (CodeExchange):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorMessage | HTTPValidationError | TokenPair
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: CodeExchange,
) -> Response[ErrorMessage | HTTPValidationError | TokenPair]:
    """Trade a sign-in's one-time code for tokens

     The `code` the callback put on your redirect URI and the PKCE `code_verifier` of the
    authorize step, once, within a minute: the usual token pair, a session like any other.
    A missing or wrong verifier is a 400 and spends the code.

    Args:
        body (CodeExchange):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorMessage | HTTPValidationError | TokenPair]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: CodeExchange,
) -> ErrorMessage | HTTPValidationError | TokenPair | None:
    """Trade a sign-in's one-time code for tokens

     The `code` the callback put on your redirect URI and the PKCE `code_verifier` of the
    authorize step, once, within a minute: the usual token pair, a session like any other.
    A missing or wrong verifier is a 400 and spends the code.

    Args:
        body (CodeExchange):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorMessage | HTTPValidationError | TokenPair
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
