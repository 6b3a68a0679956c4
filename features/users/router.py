"""HTTP routes for users: self-service under /users/me, administration for holders of
users:read and users:manage."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from core.errors import ForbiddenError, UnauthorizedError, error_responses
from core.http.caching import NOT_MODIFIED, cached
from core.http.deps import DatabaseDep, PasswordHasherDep
from core.http.openapi import links_to
from features.users import authority, permissions, service, sessions
from features.users.dependencies import CurrentUser, SignedIn, require, require_signed_in
from features.users.errors import (
    EmailTaken,
    LastRoleManager,
    NoPasswordSet,
    Outranked,
    SessionNotFound,
    SessionRequired,
    UserNotFound,
    WrongPassword,
)
from features.users.models import (
    AuthenticatedUser,
    PasswordChange,
    SessionPublic,
    UserCreate,
    UserPageRequest,
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
Reader = Annotated[AuthenticatedUser, require(permissions.READ)]
Manager = Annotated[AuthenticatedUser, require(permissions.MANAGE)]
# Manager, through a session of the caller's own: what no API key does, whatever it holds.
SignedInManager = Annotated[AuthenticatedUser, require_signed_in(permissions.MANAGE)]


@router.get("/me", response_model=UserPublic, summary="Read my account", responses=NOT_MODIFIED)
async def read_me(user: CurrentUser) -> UserPublic:
    """The account the access token belongs to."""
    return UserPublic.model_validate(user)


@router.patch(
    "/me",
    response_model=UserPublic,
    summary="Update my name or email",
    responses=error_responses(SessionRequired, WrongPassword, NoPasswordSet, EmailTaken),
)
async def update_me(
    user: SignedIn, changes: UserUpdateMe, db: DatabaseDep, passwords: PasswordHasherDep
) -> UserPublic:
    """Change name and/or email. A new email needs `current_password`, is unverified until
    its link is followed, and the previous address gets a mail with a link that puts it back
    and ends every session. Other fields in the body are ignored."""
    return await service.update_me(db, passwords, user=user, changes=changes)


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change my password",
    responses=error_responses(SessionRequired, WrongPassword, NoPasswordSet),
)
async def change_password(
    user: SignedIn, change: PasswordChange, db: DatabaseDep, passwords: PasswordHasherDep
) -> None:
    """Needs the current password. Every token issued before stops working."""
    await service.change_password(db, passwords, user=user, change=change)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete my account",
    responses=error_responses(SessionRequired, LastRoleManager),
)
async def delete_me(user: SignedIn, db: DatabaseDep) -> None:
    """Deletes the account and every session it has."""
    await service.delete_user(db, user_id=user.id)


@router.get(
    "", response_model=UsersPublic, summary="List users", responses={**admin_only, **NOT_MODIFIED}
)
@cached(lambda: [authority.USERS_TAG])
async def list_users(
    _: Reader, db: DatabaseDep, page: Annotated[UserPageRequest, Query()]
) -> UsersPublic:
    """Oldest first, at most 100 per page. Follow `next_cursor` to walk any number of users
    at the same cost per page; `offset` still works, but costs more the deeper it goes."""
    return await service.list_users(db, page=page)


@router.post(
    "",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses={**admin_only, **error_responses(Outranked, EmailTaken)},
)
async def create_user(
    admin: Manager, data: UserCreate, db: DatabaseDep, passwords: PasswordHasherDep
) -> UserPublic:
    """May set is_active; is_superuser (deprecated) grants `admin`, which only an account
    holding every permission may hand out. The account holds `member`."""
    return await service.create_user(db, passwords, data=data, actor=admin)


@router.get(
    "/{user_id}",
    response_model=UserPublic,
    summary="Read a user",
    responses={**admin_only, **error_responses(UserNotFound), **NOT_MODIFIED},
)
async def read_user(_: Reader, user_id: uuid.UUID, db: DatabaseDep) -> UserPublic:
    """Any account, by id, with its roles and permissions."""
    return await service.read_user(db, user_id=user_id)


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    summary="Update a user",
    responses={
        **admin_only,
        **error_responses(Outranked, UserNotFound, EmailTaken, LastRoleManager),
    },
)
async def update_user(
    admin: Manager,
    user_id: uuid.UUID,
    changes: UserUpdate,
    db: DatabaseDep,
    passwords: PasswordHasherDep,
) -> UserPublic:
    """Any field but the id, of an account whose permissions the caller holds too; a new
    password or deactivation ends the user's sessions, a new email is unverified until its
    link is followed. is_superuser (deprecated) grants or removes `admin`."""
    return await service.update_user(db, passwords, user_id=user_id, changes=changes, actor=admin)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user",
    responses={**admin_only, **error_responses(Outranked, UserNotFound, LastRoleManager)},
)
async def delete_user(admin: Manager, user_id: uuid.UUID, db: DatabaseDep) -> None:
    """Deletes an account whose permissions the caller holds too, and every session it has."""
    await service.delete_user(db, user_id=user_id, actor=admin)


@router.get(
    "/me/sessions",
    response_model=list[SessionPublic],
    summary="List where I am signed in",
    responses={
        **error_responses(SessionRequired),
        **NOT_MODIFIED,
        **links_to(200, {"users-end_my_session": {"session_id": "$response.body#/0/id"}}),
    },
)
async def list_my_sessions(user: SignedIn, db: DatabaseDep) -> list[SessionPublic]:
    """Every live session of the account, latest used first; `current` marks the caller's."""
    return await sessions.list_sessions(db, user_id=user.id, current=user.session_id)


@router.delete(
    "/me/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out everywhere else",
    responses=error_responses(SessionRequired),
)
async def end_my_other_sessions(user: SignedIn, db: DatabaseDep) -> None:
    """Ends every session of the account but the caller's: their refresh tokens and access
    tokens are refused from now on."""
    await sessions.end_other_sessions(db, user_id=user.id, current=user.session_id)


@router.delete(
    "/me/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End one of my sessions",
    responses=error_responses(SessionRequired, SessionNotFound),
)
async def end_my_session(user: SignedIn, session_id: uuid.UUID, db: DatabaseDep) -> None:
    """Its refresh token and access tokens are refused from now on (the caller's own too)."""
    await sessions.end_session(db, user_id=user.id, session_id=session_id)


@router.get(
    "/{user_id}/sessions",
    response_model=list[SessionPublic],
    summary="List a user's sessions",
    responses={
        **admin_only,
        **error_responses(Outranked, UserNotFound),
        **NOT_MODIFIED,
        **links_to(
            200,
            {
                "users-end_user_session": {
                    "user_id": "$request.path.user_id",
                    "session_id": "$response.body#/0/id",
                }
            },
        ),
    },
)
async def list_user_sessions(
    admin: Manager, user_id: uuid.UUID, db: DatabaseDep
) -> list[SessionPublic]:
    """The live sessions of an account whose permissions the caller holds too."""
    return await sessions.list_sessions(db, user_id=user_id, current=admin.session_id, actor=admin)


@router.delete(
    "/{user_id}/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End a user's session",
    responses={
        **admin_only,
        **error_responses(SessionRequired, Outranked, UserNotFound, SessionNotFound),
    },
)
async def end_user_session(
    admin: SignedInManager, user_id: uuid.UUID, session_id: uuid.UUID, db: DatabaseDep
) -> None:
    """Ends one session of an account whose permissions the caller holds too, from a session
    of the caller's own (an API key never ends sessions); to end them all, deactivate the
    account or set a new password."""
    await sessions.end_session(db, user_id=user_id, session_id=session_id, actor=admin)
