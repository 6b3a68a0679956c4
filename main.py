"""Composition root: builds the app from settings, mounts every installed feature and wires
the features' reactions to one another (features/registry.py)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core import jobs
from core.cache import Cache
from core.concurrency import ConcurrencyLimitMiddleware
from core.config import Settings, get_settings
from core.data.db import Database
from core.errors import SHARED_API_RESPONSES, install_error_handlers
from core.http import docs, health, observability, openapi
from core.http.caching import ConditionalGetMiddleware
from core.http.middleware import BodySizeLimitMiddleware, RequestOriginMiddleware
from core.http.ratelimit import RateLimiter
from core.http.security_headers import SecurityHeadersMiddleware
from core.jobs import mail
from core.observability.logging import PROBE_PATHS, RequestLogMiddleware, configure_logging
from core.oidc import OidcProviders
from core.security import PasswordHasher
from features.registry import connect_features, import_jobs, import_permissions, import_routers

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL, json_lines=settings.ENVIRONMENT == "production")
    connect_features()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mail.warn_when_unconfigured(settings)
        await app.state.cache.start()
        # In the background: a provider that is slow or down delays no start-up (its
        # sign-in answers 503 until it can be reached).
        warming = asyncio.create_task(app.state.oidc.warm_up())
        if app.state.jobs is not None and settings.JOBS_SCHEDULES:
            # Every feature's jobs are imported by now (import_jobs), periodic ones included.
            app.state.jobs.start_schedules(jobs.declared_jobs().values())
        yield
        warming.cancel()
        if app.state.jobs is not None:
            await asyncio.to_thread(app.state.jobs.stop, settings.JOBS_SHUTDOWN_TIMEOUT)
        app.state.password_hasher.shutdown()
        app.state.database.dispose()
        await app.state.cache.close()

    app = FastAPI(
        title=settings.PROJECT_NAME,
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if settings.DOCS_ENABLED else None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.settings = settings
    app.state.cache = Cache(
        settings.REDIS_URL,
        secret=settings.SECRET_KEY,
        timeout=settings.REDIS_TIMEOUT_SECONDS,
        backoff=settings.REDIS_BACKOFF_SECONDS,
        revocable_ttl=settings.CACHE_USER_TTL_SECONDS,
    )
    app.state.database = Database.from_settings(settings, app.state.cache)
    app.state.password_hasher = PasswordHasher(
        rounds=settings.BCRYPT_ROUNDS, concurrency=settings.HASHING_CONCURRENCY
    )
    # OpenID Connect providers (OIDC_PROVIDERS): discovery documents and keys, cached.
    app.state.oidc = OidcProviders(settings)
    app.state.rate_limiter = RateLimiter(
        settings.REDIS_URL,
        timeout=settings.REDIS_TIMEOUT_SECONDS,
        backoff=settings.REDIS_BACKOFF_SECONDS,
    )
    # Jobs go to the PostgreSQL queue and `manage.py worker` runs them; on SQLite they run in
    # this process after each commit (core/jobs), with the app's current settings and
    # database.
    app.state.jobs = (
        jobs.InProcessJobs(settings, lambda: (app.state.settings, app.state.database))
        if settings.jobs_run_in_process
        else None
    )
    jobs.use_in_process_runner(app.state.jobs)

    # Each middleware added wraps the ones added before it.
    app.add_middleware(ConditionalGetMiddleware, prefix=API_PREFIX)
    # The client's address and user agent, for the audit log (core/data/audit.py).
    app.add_middleware(RequestOriginMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_BODY_BYTES)
    if settings.MAX_CONCURRENT_REQUESTS:
        app.add_middleware(
            ConcurrencyLimitMiddleware,
            limit=settings.MAX_CONCURRENT_REQUESTS,
            exempt=PROBE_PATHS,
        )
    if settings.CORS_ORIGINS:
        # Outside the body limit, so a page can read its 413, and outside the concurrency
        # limit, so a preflight never waits for a place.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=settings.CORS_EXPOSE_HEADERS,
        )
    # Outermost but for the security headers and the HTTP metrics (observability.install,
    # below): every request is logged, 500s included, its duration includes any wait for a
    # place, and every response the middleware sees, 413s included, gets the id.
    app.add_middleware(RequestLogMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    install_error_handlers(app)

    app.include_router(health.router)
    import_permissions()
    for feature in import_routers():
        app.include_router(feature.router, prefix=API_PREFIX, responses=SHARED_API_RESPONSES)
    openapi.publish_permissions(app)
    import_jobs()
    if settings.DOCS_ENABLED:
        docs.install_docs(app)
    observability.install(app, settings)
    return app


app = create_app()
