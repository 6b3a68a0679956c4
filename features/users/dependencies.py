"""Who is calling: the current user from a Bearer access token, and the superuser gate.

Other features import `CurrentUser` and `Superuser` from here; that is the one door into users.
"""

import uuid
from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from core.errors import ForbiddenError
from core.http.deps import CacheDep, DatabaseDep, SettingsDep
from core.security import InvalidTokenError, decode_access_token
from features.users import service
from features.users.errors import InvalidAccessToken
from features.users.models import AuthenticatedUser

# auto_error=False: a missing or non-Bearer Authorization header becomes our own 401 below,
# with the same body and WWW-Authenticate header as every other credential failure.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_current_user(
    token: Annotated[str | None, Depends(oauth2_scheme)],
    db: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> AuthenticatedUser:
    if not token:
        raise InvalidAccessToken("Not authenticated")
    try:
        claims = decode_access_token(token, secret_key=settings.SECRET_KEY)
        user_id = uuid.UUID(claims.subject)
    except (InvalidTokenError, ValueError) as error:
        raise InvalidAccessToken from error
    return await service.authenticate(
        db, cache, user_id=user_id, token_version=claims.token_version
    )


CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]


async def get_current_superuser(user: CurrentUser) -> AuthenticatedUser:
    if not user.is_superuser:
        raise ForbiddenError
    return user


Superuser = Annotated[AuthenticatedUser, Depends(get_current_superuser)]
