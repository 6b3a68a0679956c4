import datetime
from http import HTTPStatus
from typing import Any, cast
from uuid import UUID

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.audit_events_public import AuditEventsPublic
from ...models.error_message import ErrorMessage
from ...models.http_validation_error import HTTPValidationError
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    type_: None | str | Unset = UNSET,
    actor_id: None | Unset | UUID = UNSET,
    subject_id: None | Unset | UUID = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    json_cursor: None | str | Unset
    if isinstance(cursor, Unset):
        json_cursor = UNSET
    else:
        json_cursor = cursor
    params["cursor"] = json_cursor

    params["limit"] = limit

    json_type_: None | str | Unset
    if isinstance(type_, Unset):
        json_type_ = UNSET
    else:
        json_type_ = type_
    params["type"] = json_type_

    json_actor_id: None | str | Unset
    if isinstance(actor_id, Unset):
        json_actor_id = UNSET
    elif isinstance(actor_id, UUID):
        json_actor_id = str(actor_id)
    else:
        json_actor_id = actor_id
    params["actor_id"] = json_actor_id

    json_subject_id: None | str | Unset
    if isinstance(subject_id, Unset):
        json_subject_id = UNSET
    elif isinstance(subject_id, UUID):
        json_subject_id = str(subject_id)
    else:
        json_subject_id = subject_id
    params["subject_id"] = json_subject_id

    json_since: None | str | Unset
    if isinstance(since, Unset):
        json_since = UNSET
    elif isinstance(since, datetime.datetime):
        json_since = since.isoformat()
    else:
        json_since = since
    params["since"] = json_since

    json_until: None | str | Unset
    if isinstance(until, Unset):
        json_until = UNSET
    elif isinstance(until, datetime.datetime):
        json_until = until.isoformat()
    else:
        json_until = until
    params["until"] = json_until

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/v1/audit-events",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | AuditEventsPublic | ErrorMessage | HTTPValidationError | None:
    if response.status_code == 200:
        response_200 = AuditEventsPublic.from_dict(response.json())

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
) -> Response[Any | AuditEventsPublic | ErrorMessage | HTTPValidationError]:
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
    type_: None | str | Unset = UNSET,
    actor_id: None | Unset | UUID = UNSET,
    subject_id: None | Unset | UUID = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
) -> Response[Any | AuditEventsPublic | ErrorMessage | HTTPValidationError]:
    """List audit events

     Newest first, at most 100 per page: follow `next_cursor` for older ones. Filters
    combine: type, actor, subject, and a time range (`since` inclusive, `until` exclusive).
    The log cannot be changed through the API.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        type_ (None | str | Unset): Only events of this type, e.g. `auth.sign_in_failed`
        actor_id (None | Unset | UUID): Only events by this account
        subject_id (None | Unset | UUID): Only events about this account
        since (datetime.datetime | None | Unset): Only events at or after this time
        until (datetime.datetime | None | Unset): Only events before this time

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | AuditEventsPublic | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        cursor=cursor,
        limit=limit,
        type_=type_,
        actor_id=actor_id,
        subject_id=subject_id,
        since=since,
        until=until,
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
    type_: None | str | Unset = UNSET,
    actor_id: None | Unset | UUID = UNSET,
    subject_id: None | Unset | UUID = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
) -> Any | AuditEventsPublic | ErrorMessage | HTTPValidationError | None:
    """List audit events

     Newest first, at most 100 per page: follow `next_cursor` for older ones. Filters
    combine: type, actor, subject, and a time range (`since` inclusive, `until` exclusive).
    The log cannot be changed through the API.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        type_ (None | str | Unset): Only events of this type, e.g. `auth.sign_in_failed`
        actor_id (None | Unset | UUID): Only events by this account
        subject_id (None | Unset | UUID): Only events about this account
        since (datetime.datetime | None | Unset): Only events at or after this time
        until (datetime.datetime | None | Unset): Only events before this time

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | AuditEventsPublic | ErrorMessage | HTTPValidationError
    """

    return sync_detailed(
        client=client,
        cursor=cursor,
        limit=limit,
        type_=type_,
        actor_id=actor_id,
        subject_id=subject_id,
        since=since,
        until=until,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    type_: None | str | Unset = UNSET,
    actor_id: None | Unset | UUID = UNSET,
    subject_id: None | Unset | UUID = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
) -> Response[Any | AuditEventsPublic | ErrorMessage | HTTPValidationError]:
    """List audit events

     Newest first, at most 100 per page: follow `next_cursor` for older ones. Filters
    combine: type, actor, subject, and a time range (`since` inclusive, `until` exclusive).
    The log cannot be changed through the API.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        type_ (None | str | Unset): Only events of this type, e.g. `auth.sign_in_failed`
        actor_id (None | Unset | UUID): Only events by this account
        subject_id (None | Unset | UUID): Only events about this account
        since (datetime.datetime | None | Unset): Only events at or after this time
        until (datetime.datetime | None | Unset): Only events before this time

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | AuditEventsPublic | ErrorMessage | HTTPValidationError]
    """

    kwargs = _get_kwargs(
        cursor=cursor,
        limit=limit,
        type_=type_,
        actor_id=actor_id,
        subject_id=subject_id,
        since=since,
        until=until,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 100,
    type_: None | str | Unset = UNSET,
    actor_id: None | Unset | UUID = UNSET,
    subject_id: None | Unset | UUID = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
) -> Any | AuditEventsPublic | ErrorMessage | HTTPValidationError | None:
    """List audit events

     Newest first, at most 100 per page: follow `next_cursor` for older ones. Filters
    combine: type, actor, subject, and a time range (`since` inclusive, `until` exclusive).
    The log cannot be changed through the API.

    Args:
        cursor (None | str | Unset): `next_cursor` of the previous page; omit it for the first
            page
        limit (int | Unset): Rows per page; larger values are capped at 100 Default: 100.
        type_ (None | str | Unset): Only events of this type, e.g. `auth.sign_in_failed`
        actor_id (None | Unset | UUID): Only events by this account
        subject_id (None | Unset | UUID): Only events about this account
        since (datetime.datetime | None | Unset): Only events at or after this time
        until (datetime.datetime | None | Unset): Only events before this time

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | AuditEventsPublic | ErrorMessage | HTTPValidationError
    """

    return (
        await asyncio_detailed(
            client=client,
            cursor=cursor,
            limit=limit,
            type_=type_,
            actor_id=actor_id,
            subject_id=subject_id,
            since=since,
            until=until,
        )
    ).parsed
