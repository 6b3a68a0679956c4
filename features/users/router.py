"""HTTP routes for users: self-service under /users/me, administration for superusers."""

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, status

from core.config import Settings
from core.db import Database
from core.deps import DatabaseDep, PasswordHasherDep, SettingsDep
from core.errors import ForbiddenError, UnauthorizedError, error_responses
from features.users import service
from features.users.dependencies import CurrentUser, Superuser
from features.users.errors import EmailTaken, LastSuperuser, UserNotFound, WrongPassword
from features.users.models import (
    LIST_LIMIT_MAX,
    PasswordChange,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
    UserUpdateMe,
)

router = APIRouter(
    prefix="/users",
    tags=["users"],
    responses=error_responses(UnauthorizedError),
)
admin_only = error_responses(ForbiddenError)


def announce_email_change(
    tasks: BackgroundTasks, db: Database, settings: Settings, updated: service.UpdatedUser
) -> None:
    """Let other features (verification mails) react once the response has been sent."""
    if updated.email_changed:
        for listener in service.email_changed_listeners:
            tasks.add_task(listener, db, settings, updated.user)


@router.get("/me", response_model=UserPublic, summary="Read my account")
async def read_me(user: CurrentUser) -> UserPublic:
    """The account the access token belongs to."""
    return UserPublic.model_validate(user)


@router.patch(
    "/me",
    response_model=UserPublic,
    summary="Update my name or email",
    responses=error_responses(EmailTaken),
)
async def update_me(
    user: CurrentUser,
    changes: UserUpdateMe,
    db: DatabaseDep,
    settings: SettingsDep,
    tasks: BackgroundTasks,
) -> UserPublic:
    """Change name and/or email. A new email is unverified until its link is followed.
    Other fields in the body are ignored."""
    updated = await db.run(service.update_user, user.id, changes)
    announce_email_change(tasks, db, settings, updated)
    return UserPublic.model_validate(updated.user)


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change my password",
    responses=error_responses(WrongPassword),
)
async def change_password(
    user: CurrentUser, change: PasswordChange, db: DatabaseDep, hasher: PasswordHasherDep
) -> None:
    """Needs the current password. Every token issued before stops working."""
    await service.change_own_password(db, hasher, user, change)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete my account",
    responses=error_responses(LastSuperuser),
)
async def delete_me(user: CurrentUser, db: DatabaseDep) -> None:
    """Deletes the account and every session it has."""
    await db.run(service.delete, user.id)


@router.get("", response_model=UsersPublic, summary="List users", responses=admin_only)
async def list_users(
    _: Superuser,
    db: DatabaseDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = LIST_LIMIT_MAX,
) -> UsersPublic:
    """Oldest first; `limit` is capped at 100."""
    return await db.run_read(service.list_users, offset, limit)


@router.post(
    "",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses={**admin_only, **error_responses(EmailTaken)},
)
async def create_user(
    _: Superuser, data: UserCreate, db: DatabaseDep, hasher: PasswordHasherDep
) -> UserPublic:
    """A superuser may set is_active and is_superuser."""
    user = await service.create_with_password(db, hasher, data)
    return UserPublic.model_validate(user)


@router.get(
    "/{user_id}",
    response_model=UserPublic,
    summary="Read a user",
    responses={**admin_only, **error_responses(UserNotFound)},
)
async def read_user(_: Superuser, user_id: uuid.UUID, db: DatabaseDep) -> UserPublic:
    """Any account, by id."""
    return UserPublic.model_validate(await db.run_read(service.get, user_id))


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    summary="Update a user",
    responses={**admin_only, **error_responses(UserNotFound, EmailTaken)},
)
async def update_user(
    _: Superuser,
    user_id: uuid.UUID,
    changes: UserUpdate,
    db: DatabaseDep,
    hasher: PasswordHasherDep,
    settings: SettingsDep,
    tasks: BackgroundTasks,
) -> UserPublic:
    """Any field but the id; a new password or deactivation ends the user's sessions,
    a new email is unverified until its link is followed."""
    updated = await service.update_with_password(db, hasher, user_id, changes)
    announce_email_change(tasks, db, settings, updated)
    return UserPublic.model_validate(updated.user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user",
    responses={**admin_only, **error_responses(UserNotFound, LastSuperuser)},
)
async def delete_user(_: Superuser, user_id: uuid.UUID, db: DatabaseDep) -> None:
    """Deletes the account and every session it has."""
    await db.run(service.delete, user_id)
