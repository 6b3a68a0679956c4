from http import HTTPStatus
from typing import Any, cast

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_message import ErrorMessage
from ...models.http_validation_error import HTTPValidationError
from ...models.users_public import UsersPublic
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    offset: int | Unset = 0,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    json_cursor: None | str | Unset
    if isinstance(cursor, Unset):
        json_cursor = UNSET
    else:
        json_cursor = cursor
    params["cursor"] = json_cursor

    params["limit"] = limit

    params["offset"] = offset

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/v1/users",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | ErrorMessage | HTTPValidationError | UsersPublic | None:
    if response.status_code == 200:
        response_200 = UsersPublic.from_dict(response.json())

        return response_200

    if response.status_code == 304:
        response_304 = cast(Any, None)
        return response_304

    if response.status_code == 400:
        response_400 = ErrorMessage.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorMessage.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = ErrorMessage.from_dict(response.json())

        return response_403

    if response.status_code == 413:
        response_413 = ErrorMessage.from_dict(response.json())

        return response_413

    if response.status_code == 422:
        response_422 = HTTPValidationError.from_dict(response.json())

        return response_422

    if response.status_code == 503:
        response_503 = ErrorMessage.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Any | ErrorMessage | HTTPValidationError | UsersPublic]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    offset: int | Unset = 0,
) -> Response[Any | ErrorMessage | HTTPValidationError | UsersPublic]:
    """List users

     Oldest first, at most 100 per page. Follow `next_cursor` to walk any number of users
    at the same cost per page; `offset` still works, but costs more the deeper it goes.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        offset (int | Unset): Rows to skip Default: 0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorMessage | HTTPValidationError | UsersPublic]
    """

    kwargs = _get_kwargs(
        cursor=cursor,
        limit=limit,
        offset=offset,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    offset: int | Unset = 0,
) -> Any | ErrorMessage | HTTPValidationError | UsersPublic | None:
    """List users

     Oldest first, at most 100 per page. Follow `next_cursor` to walk any number of users
    at the same cost per page; `offset` still works, but costs more the deeper it goes.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        offset (int | Unset): Rows to skip Default: 0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorMessage | HTTPValidationError | UsersPublic
    """

    return sync_detailed(
        client=client,
        cursor=cursor,
        limit=limit,
        offset=offset,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    offset: int | Unset = 0,
) -> Response[Any | ErrorMessage | HTTPValidationError | UsersPublic]:
    """List users

     Oldest first, at most 100 per page. Follow `next_cursor` to walk any number of users
    at the same cost per page; `offset` still works, but costs more the deeper it goes.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        offset (int | Unset): Rows to skip Default: 0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorMessage | HTTPValidationError | UsersPublic]
    """

    kwargs = _get_kwargs(
        cursor=cursor,
        limit=limit,
        offset=offset,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    offset: int | Unset = 0,
) -> Any | ErrorMessage | HTTPValidationError | UsersPublic | None:
    """List users

     Oldest first, at most 100 per page. Follow `next_cursor` to walk any number of users
    at the same cost per page; `offset` still works, but costs more the deeper it goes.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        offset (int | Unset): Rows to skip Default: 0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorMessage | HTTPValidationError | UsersPublic
    """

    return (
        await asyncio_detailed(
            client=client,
            cursor=cursor,
            limit=limit,
            offset=offset,
        )
    ).parsed
