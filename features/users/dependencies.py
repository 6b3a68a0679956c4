"""Who is calling, and what they may do: the current user from a Bearer access token, with
the permissions their roles grant.

Other features import `CurrentUser` and `require` from here; that is the one door into users.
A route that needs a permission asks for it in one line:

    admin: Annotated[AuthenticatedUser, require(permissions.MANAGE)]

The requirement is the route's security requirement in OpenAPI (a scope of the OAuth2
scheme), so /docs and the generated clients show it. Missing it is a 403.

A feature whose rows each belong to one account says, in one line per route, whose rows the
route reaches (`OwnedRows`, below): the caller's own, or every owner's for a holder of the
feature's `read_any` / `manage_any`.
"""

import uuid
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBearer,
    OAuth2PasswordBearer,
    SecurityScopes,
)

from core.errors import ForbiddenError
from core.http.deps import CacheDep, DatabaseDep, RateLimiterDep, SettingsDep
from core.http.openapi import WidenedBy
from core.permissions import Reach, is_declared
from core.security import InvalidTokenError, decode_access_token
from features.users import authority, service
from features.users.errors import InvalidAccessToken, SessionRequired
from features.users.models import AuthenticatedUser

# auto_error=False: a missing or non-Bearer Authorization header becomes our own 401 below,
# with the same body and WWW-Authenticate header as every other credential failure. The
# scopes it offers (every declared permission) are written into OpenAPI by core/http/openapi.py.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)
# The other Bearer credential, for OpenAPI and Swagger's Authorize: an API key goes in the
# same Authorization header, told apart by its prefix.
api_key_scheme = HTTPBearer(
    scheme_name="APIKey",
    bearerFormat="fak_...",
    description="An API key (POST /api/v1/api-keys), for scripts and integrations",
    auto_error=False,
)


async def get_current_user(
    security_scopes: SecurityScopes,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    _api_key: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)],
    db: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> AuthenticatedUser:
    if not token:
        raise InvalidAccessToken("Not authenticated")
    check = authority.credentials.check_for(token)
    if check is not None:
        user = await check(token, authority.CredentialContext(db, cache, settings, limiter))
    else:
        try:
            claims = decode_access_token(token, secret_key=settings.SECRET_KEY)
            user_id, session_id = uuid.UUID(claims.subject), uuid.UUID(claims.session_id)
        except (InvalidTokenError, ValueError) as error:
            raise InvalidAccessToken from error
        user = await service.authenticate(
            db,
            cache,
            user_id=user_id,
            token_version=claims.token_version,
            session_id=session_id,
        )
    if not set(security_scopes.scopes) <= set(user.permissions):
        raise ForbiddenError
    return user


CurrentUser = Annotated[AuthenticatedUser, Security(get_current_user)]


async def get_signed_in_user(user: CurrentUser) -> AuthenticatedUser:
    if user.credential != "session":
        raise SessionRequired
    return user


# The current user through a session they signed in to: what only the account's owner, at
# the keyboard, may do (change the password or the address, delete the account, issue keys,
# end sessions) an API key never may (403).
SignedIn = Annotated[AuthenticatedUser, Depends(get_signed_in_user)]


def _check_declared(permissions: tuple[str, ...]) -> None:
    unknown = [name for name in permissions if not is_declared(name)]
    if unknown:  # a typo would make the route unreachable for everyone but admin
        raise ValueError(f"no feature declares {unknown}")


def require(*permissions: str) -> Any:
    """The current user, who must hold every one of `permissions` (403 otherwise)."""
    _check_declared(permissions)
    return Security(get_current_user, scopes=list(permissions))


def require_signed_in(*permissions: str) -> Any:
    """As `require`, and through a session the caller signed in to: an API key holding every
    one of `permissions` still gets 403 (ending sessions, say, is never a script's to do)."""
    _check_declared(permissions)

    async def signed_in_holder(
        user: Annotated[AuthenticatedUser, Security(get_current_user, scopes=list(permissions))],
    ) -> AuthenticatedUser:
        return await get_signed_in_user(user)

    return Depends(signed_in_holder)


class OwnedRows:
    """Who reaches a feature's rows that each belong to one account (an `owner_id`).

    Every owner reads, changes and deletes their own rows; nobody needs a permission for that.
    A holder of the feature's `read_any` reads every owner's rows too, and a holder of its
    `manage_any` also changes and deletes them (and so reads them). Routes say which they do,
    in one line each:

        owned = OwnedRows(read_any=permissions.READ_ANY, manage_any=permissions.MANAGE_ANY)
        ReadReach = Annotated[Reach, owned.read]        # list, read one
        ChangeReach = Annotated[Reach, owned.change]    # update, delete

    Both give the caller's `Reach` (core/permissions.py), for the service to ask about each
    row's owner; neither refuses anyone (an API key reaches what its own permissions allow).
    Each route lists the permissions that widen it as alternative security requirements in
    OpenAPI (core/http/openapi.py: `WidenedBy`): `read` both, `change` only `manage_any`.
    """

    def __init__(self, *, read_any: str, manage_any: str) -> None:
        _check_declared((read_any, manage_any))
        self.read = Depends(_ReachOf(read_any, manage_any, widened_by=(read_any, manage_any)))
        self.change = Depends(_ReachOf(read_any, manage_any, widened_by=(manage_any,)))


class _ReachOf(WidenedBy):
    def __init__(self, read_any: str, manage_any: str, *, widened_by: tuple[str, ...]) -> None:
        super().__init__(*widened_by)
        self.read_any = read_any
        self.manage_any = manage_any

    async def __call__(self, user: CurrentUser) -> Reach:
        # Whoever may change every owner's rows must see them to: manage_any includes read_any.
        changes_any = self.manage_any in user.permissions
        return Reach(
            caller_id=user.id,
            reads_any=changes_any or self.read_any in user.permissions,
            changes_any=changes_any,
        )
