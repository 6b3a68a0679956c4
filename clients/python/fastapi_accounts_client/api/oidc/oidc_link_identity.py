from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.authorization_url import AuthorizationUrl
from ...models.error_message import ErrorMessage
from ...models.http_validation_error import HTTPValidationError
from ...models.link_request import LinkRequest
from ...types import Response


def _get_kwargs(
    provider: str,
    *,
    body: LinkRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/v1/users/me/identities/{provider}".format(
            provider=quote(str(provider), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> AuthorizationUrl | ErrorMessage | HTTPValidationError | None:
    if response.status_code == 200:
        response_200 = AuthorizationUrl.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = ErrorMessage.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorMessage.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = ErrorMessage.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = ErrorMessage.from_dict(response.json())

        return response_404

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
) -> Response[AuthorizationUrl | ErrorMessage | HTTPValidationError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    provider: str,
    *,
    client: AuthenticatedClient,
    body: LinkRequest,
) -> Response[AuthorizationUrl | ErrorMessage | HTTPValidationError]:
    """Begin linking a provider account to mine

     Send the browser to `authorization_url` (a navigation). Call this with the browser's
    cookies (`credentials: "include"`): the answer binds the attempt to the browser. Needs
    `current_password` when the account has one; without one, a sign-in in the last 10
    minutes (403 otherwise). The browser comes back to `redirect_uri` with
    `linked=<provider>` or `error=<code>`; the link is refused if this session ends or the
    password changes meanwhile.

    Args:
        provider (str):
        body (LinkRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuthorizationUrl | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        provider=provider,
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    provider: str,
    *,
    client: AuthenticatedClient,
    body: LinkRequest,
) -> AuthorizationUrl | ErrorMessage | HTTPValidationError | None:
    """Begin linking a provider account to mine

     Send the browser to `authorization_url` (a navigation). Call this with the browser's
    cookies (`credentials: "include"`): the answer binds the attempt to the browser. Needs
    `current_password` when the account has one; without one, a sign-in in the last 10
    minutes (403 otherwise). The browser comes back to `redirect_uri` with
    `linked=<provider>` or `error=<code>`; the link is refused if this session ends or the
    password changes meanwhile.

    Args:
        provider (str):
        body (LinkRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuthorizationUrl | ErrorMessage | HTTPValidationError
    """

    return sync_detailed(
        provider=provider,
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    provider: str,
    *,
    client: AuthenticatedClient,
    body: LinkRequest,
) -> Response[AuthorizationUrl | ErrorMessage | HTTPValidationError]:
    """Begin linking a provider account to mine

     Send the browser to `authorization_url` (a navigation). Call this with the browser's
    cookies (`credentials: "include"`): the answer binds the attempt to the browser. Needs
    `current_password` when the account has one; without one, a sign-in in the last 10
    minutes (403 otherwise). The browser comes back to `redirect_uri` with
    `linked=<provider>` or `error=<code>`; the link is refused if this session ends or the
    password changes meanwhile.

    Args:
        provider (str):
        body (LinkRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuthorizationUrl | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        provider=provider,
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    provider: str,
    *,
    client: AuthenticatedClient,
    body: LinkRequest,
) -> AuthorizationUrl | ErrorMessage | HTTPValidationError | None:
    """Begin linking a provider account to mine

     Send the browser to `authorization_url` (a navigation). Call this with the browser's
    cookies (`credentials: "include"`): the answer binds the attempt to the browser. Needs
    `current_password` when the account has one; without one, a sign-in in the last 10
    minutes (403 otherwise). The browser comes back to `redirect_uri` with
    `linked=<provider>` or `error=<code>`; the link is refused if this session ends or the
    password changes meanwhile.

    Args:
        provider (str):
        body (LinkRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuthorizationUrl | ErrorMessage | HTTPValidationError
    """

    return (
        await asyncio_detailed(
            provider=provider,
            client=client,
            body=body,
        )
    ).parsed
