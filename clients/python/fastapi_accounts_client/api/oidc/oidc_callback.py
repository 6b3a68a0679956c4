from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_message import ErrorMessage
from ...models.http_validation_error import HTTPValidationError
from ...types import UNSET, Response, Unset


def _get_kwargs(
    provider: str,
    *,
    state: None | str | Unset = UNSET,
    code: None | str | Unset = UNSET,
    error: None | str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    json_state: None | str | Unset
    if isinstance(state, Unset):
        json_state = UNSET
    else:
        json_state = state
    params["state"] = json_state

    json_code: None | str | Unset
    if isinstance(code, Unset):
        json_code = UNSET
    else:
        json_code = code
    params["code"] = json_code

    json_error: None | str | Unset
    if isinstance(error, Unset):
        json_error = UNSET
    else:
        json_error = error
    params["error"] = json_error

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/v1/auth/oidc/{provider}/callback".format(
            provider=quote(str(provider), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | ErrorMessage | HTTPValidationError | None:
    if response.status_code == 302:
        response_302 = cast(Any, None)
        return response_302

    if response.status_code == 400:
        response_400 = ErrorMessage.from_dict(response.json())

        return response_400

    if response.status_code == 404:
        response_404 = ErrorMessage.from_dict(response.json())

        return response_404

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
) -> Response[Any | ErrorMessage | HTTPValidationError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    provider: str,
    *,
    client: AuthenticatedClient | Client,
    state: None | str | Unset = UNSET,
    code: None | str | Unset = UNSET,
    error: None | str | Unset = UNSET,
) -> Response[Any | ErrorMessage | HTTPValidationError]:
    """Where the provider sends the browser back

     Register this URL at the provider. It redirects to the frontend's `redirect_uri`
    with `code` (a sign-in), `linked=<provider>` (a link) or `error=<code>`; an unknown or
    spent `state` is a 400, having nowhere trusted to redirect to.

    Args:
        provider (str):
        state (None | str | Unset):
        code (None | str | Unset):
        error (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        provider=provider,
        state=state,
        code=code,
        error=error,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    provider: str,
    *,
    client: AuthenticatedClient | Client,
    state: None | str | Unset = UNSET,
    code: None | str | Unset = UNSET,
    error: None | str | Unset = UNSET,
) -> Any | ErrorMessage | HTTPValidationError | None:
    """Where the provider sends the browser back

     Register this URL at the provider. It redirects to the frontend's `redirect_uri`
    with `code` (a sign-in), `linked=<provider>` (a link) or `error=<code>`; an unknown or
    spent `state` is a 400, having nowhere trusted to redirect to.

    Args:
        provider (str):
        state (None | str | Unset):
        code (None | str | Unset):
        error (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorMessage | HTTPValidationError
    """

    return sync_detailed(
        provider=provider,
        client=client,
        state=state,
        code=code,
        error=error,
    ).parsed


async def asyncio_detailed(
    provider: str,
    *,
    client: AuthenticatedClient | Client,
    state: None | str | Unset = UNSET,
    code: None | str | Unset = UNSET,
    error: None | str | Unset = UNSET,
) -> Response[Any | ErrorMessage | HTTPValidationError]:
    """Where the provider sends the browser back

     Register this URL at the provider. It redirects to the frontend's `redirect_uri`
    with `code` (a sign-in), `linked=<provider>` (a link) or `error=<code>`; an unknown or
    spent `state` is a 400, having nowhere trusted to redirect to.

    Args:
        provider (str):
        state (None | str | Unset):
        code (None | str | Unset):
        error (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        provider=provider,
        state=state,
        code=code,
        error=error,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    provider: str,
    *,
    client: AuthenticatedClient | Client,
    state: None | str | Unset = UNSET,
    code: None | str | Unset = UNSET,
    error: None | str | Unset = UNSET,
) -> Any | ErrorMessage | HTTPValidationError | None:
    """Where the provider sends the browser back

     Register this URL at the provider. It redirects to the frontend's `redirect_uri`
    with `code` (a sign-in), `linked=<provider>` (a link) or `error=<code>`; an unknown or
    spent `state` is a 400, having nowhere trusted to redirect to.

    Args:
        provider (str):
        state (None | str | Unset):
        code (None | str | Unset):
        error (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorMessage | HTTPValidationError
    """

    return (
        await asyncio_detailed(
            provider=provider,
            client=client,
            state=state,
            code=code,
            error=error,
        )
    ).parsed
