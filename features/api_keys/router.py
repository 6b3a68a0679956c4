"""HTTP routes for API keys: issue one (shown once), list, revoke."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from core.errors import ForbiddenError, UnauthorizedError, error_responses
from core.http.caching import NOT_MODIFIED
from core.http.deps import DatabaseDep, SettingsDep
from core.http.openapi import links_to
from features.api_keys import service
from features.api_keys.errors import ApiKeyNotFound
from features.api_keys.models import ApiKeyCreate, ApiKeyCreated, ApiKeyOwner, ApiKeyPublic
from features.api_keys.permissions import MANAGE
from features.users.dependencies import CurrentUser, SignedIn
from features.users.errors import Outranked, SessionRequired

router = APIRouter(
    prefix="/api-keys", tags=["api-keys"], responses=error_responses(UnauthorizedError)
)


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    responses={
        **error_responses(SessionRequired, Outranked),
        **links_to(201, {"api-keys-revoke_key": {"key_id": "$response.body#/id"}}),
    },
)
async def create_key(
    owner: SignedIn, data: ApiKeyCreate, db: DatabaseDep, settings: SettingsDep
) -> ApiKeyCreated:
    """The key is in `key`, this once: store it now. It may hold only permissions you hold,
    and never more than you hold at each use. Send it as `Authorization: Bearer <key>`. A key
    cannot make keys, change the password or email, or end sessions."""
    return await service.create_key(db, owner=owner, data=data, settings=settings)


@router.get(
    "",
    response_model=list[ApiKeyPublic],
    summary="List API keys",
    responses={**error_responses(ForbiddenError), **NOT_MODIFIED},
)
async def list_keys(
    user: CurrentUser, db: DatabaseDep, whose: Annotated[ApiKeyOwner, Query()]
) -> list[ApiKeyPublic]:
    """Your keys, oldest first (never their secret). A holder of api_keys:manage may pass
    another account's `user_id`."""
    owner_id = whose.user_id or user.id
    if owner_id != user.id and MANAGE not in user.permissions:
        raise ForbiddenError
    return await service.list_keys(db, owner_id=owner_id)


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key",
    responses=error_responses(SessionRequired, ApiKeyNotFound),
)
async def revoke_key(actor: SignedIn, key_id: uuid.UUID, db: DatabaseDep) -> None:
    """The key stops working everywhere once this answers. Another account's key is a 404,
    unless you hold api_keys:manage."""
    await service.revoke_key(db, actor=actor, key_id=key_id)
