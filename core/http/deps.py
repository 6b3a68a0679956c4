"""Request-scoped access to the shared machinery the app is built with.

Each one is an `async def` on purpose: FastAPI runs plain `def` dependencies in a worker
thread, and a thread hop to read an attribute would cost more than the attribute.
"""

from typing import Annotated

from fastapi import Depends, Request

from core.cache import Cache
from core.config import Settings
from core.data.audit import normalized_ip
from core.data.db import Database
from core.http.ratelimit import RateLimiter
from core.oidc import OidcProviders
from core.security import PasswordHasher


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_password_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.password_hasher
    return hasher


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def get_oidc_providers(request: Request) -> OidcProviders:
    providers: OidcProviders = request.app.state.oidc
    return providers


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
CacheDep = Annotated[Cache, Depends(get_cache)]
OidcDep = Annotated[OidcProviders, Depends(get_oidc_providers)]


async def get_client_ip(request: Request) -> str:
    """The peer address; behind a proxy, the server's forwarded-allow-ips makes it the
    client's (see docs/deploy/docker.md, Client addresses). Anything that is not an IP address (a
    forged forwarding header can carry any text) is `invalid`, so no such text reaches a
    rate limit, a log or the audit log (core/http/middleware.py reads it the same way)."""
    return normalized_ip(None if request.client is None else request.client.host)


ClientIP = Annotated[str, Depends(get_client_ip)]
