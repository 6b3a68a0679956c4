from http import HTTPStatus
from typing import Any, Literal, cast
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_message import ErrorMessage
from ...models.http_validation_error import HTTPValidationError
from ...types import UNSET, Response


def _get_kwargs(
    provider: str,
    *,
    redirect_uri: str,
    code_challenge: str,
    code_challenge_method: Literal["S256"],
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["redirect_uri"] = redirect_uri

    params["code_challenge"] = code_challenge

    params["code_challenge_method"] = code_challenge_method

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/v1/auth/oidc/{provider}/authorize".format(
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
    redirect_uri: str,
    code_challenge: str,
    code_challenge_method: Literal["S256"],
) -> Response[Any | ErrorMessage | HTTPValidationError]:
    """Begin signing in with a provider

     Navigate the browser here (not a fetch): it goes on to the provider, and comes back
    to `redirect_uri` (one of OIDC_REDIRECT_URIS, exactly) with `code` to trade at
    `POST /auth/oidc/exchange` with the verifier of `code_challenge`, or `error`. 503 while
    the provider cannot be reached.

    Args:
        provider (str):
        redirect_uri (str):
        code_challenge (str): PKCE (RFC 7636): base64url(SHA-256(code_verifier)), unpadded; keep
            the verifier (43 to 128 random characters) for the exchange
        code_challenge_method (Literal['S256']): Only S256

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        provider=provider,
        redirect_uri=redirect_uri,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    provider: str,
    *,
    client: AuthenticatedClient | Client,
    redirect_uri: str,
    code_challenge: str,
    code_challenge_method: Literal["S256"],
) -> Any | ErrorMessage | HTTPValidationError | None:
    """Begin signing in with a provider

     Navigate the browser here (not a fetch): it goes on to the provider, and comes back
    to `redirect_uri` (one of OIDC_REDIRECT_URIS, exactly) with `code` to trade at
    `POST /auth/oidc/exchange` with the verifier of `code_challenge`, or `error`. 503 while
    the provider cannot be reached.

    Args:
        provider (str):
        redirect_uri (str):
        code_challenge (str): PKCE (RFC 7636): base64url(SHA-256(code_verifier)), unpadded; keep
            the verifier (43 to 128 random characters) for the exchange
        code_challenge_method (Literal['S256']): Only S256

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorMessage | HTTPValidationError
    """

    return sync_detailed(
        provider=provider,
        client=client,
        redirect_uri=redirect_uri,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    ).parsed


async def asyncio_detailed(
    provider: str,
    *,
    client: AuthenticatedClient | Client,
    redirect_uri: str,
    code_challenge: str,
    code_challenge_method: Literal["S256"],
) -> Response[Any | ErrorMessage | HTTPValidationError]:
    """Begin signing in with a provider

     Navigate the browser here (not a fetch): it goes on to the provider, and comes back
    to `redirect_uri` (one of OIDC_REDIRECT_URIS, exactly) with `code` to trade at
    `POST /auth/oidc/exchange` with the verifier of `code_challenge`, or `error`. 503 while
    the provider cannot be reached.

    Args:
        provider (str):
        redirect_uri (str):
        code_challenge (str): PKCE (RFC 7636): base64url(SHA-256(code_verifier)), unpadded; keep
            the verifier (43 to 128 random characters) for the exchange
        code_challenge_method (Literal['S256']): Only S256

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        provider=provider,
        redirect_uri=redirect_uri,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    provider: str,
    *,
    client: AuthenticatedClient | Client,
    redirect_uri: str,
    code_challenge: str,
    code_challenge_method: Literal["S256"],
) -> Any | ErrorMessage | HTTPValidationError | None:
    """Begin signing in with a provider

     Navigate the browser here (not a fetch): it goes on to the provider, and comes back
    to `redirect_uri` (one of OIDC_REDIRECT_URIS, exactly) with `code` to trade at
    `POST /auth/oidc/exchange` with the verifier of `code_challenge`, or `error`. 503 while
    the provider cannot be reached.

    Args:
        provider (str):
        redirect_uri (str):
        code_challenge (str): PKCE (RFC 7636): base64url(SHA-256(code_verifier)), unpadded; keep
            the verifier (43 to 128 random characters) for the exchange
        code_challenge_method (Literal['S256']): Only S256

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
            redirect_uri=redirect_uri,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
        )
    ).parsed
