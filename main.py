"""Composition root: builds the app from settings and mounts every installed feature."""

# Building the app creates about 110,000 objects (modules, models, routes) that live as long
# as the process. The cyclic garbage collector would walk them again and again while they are
# being created (about 60 ms of a worker's half-second start-up here) and again in every full
# collection while serving. So nothing is collected during the build, and gc.freeze() then
# moves what was built to a generation that is never scanned. The build leaves under a
# thousand unreachable objects behind, which is less than a collection would cost.
import gc

_collector_was_enabled = gc.isenabled()
gc.disable()

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core import docs, health, observability
from core.config import Settings, get_settings
from core.db import Database
from core.errors import install_error_handlers
from core.logging import RequestLogMiddleware, configure_logging
from core.middleware import BodySizeLimitMiddleware
from core.ratelimit import RateLimiter
from core.security import PasswordHasher
from features.registry import import_routers

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL, json_lines=settings.ENVIRONMENT == "production")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.password_hasher.shutdown()
        app.state.database.dispose()

    app = FastAPI(
        title=settings.PROJECT_NAME,
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if settings.DOCS_ENABLED else None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.database = Database.from_settings(settings)
    app.state.password_hasher = PasswordHasher(
        rounds=settings.BCRYPT_ROUNDS, concurrency=settings.HASHING_CONCURRENCY
    )
    app.state.rate_limiter = RateLimiter(settings.REDIS_URL)

    if settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_BODY_BYTES)
    # Added last so it is outermost: every response, 413s and 500s included, gets the id.
    app.add_middleware(RequestLogMiddleware)
    install_error_handlers(app)

    app.include_router(health.router)
    for feature in import_routers():
        app.include_router(feature.router, prefix=API_PREFIX)
    if settings.DOCS_ENABLED:
        docs.install_docs(app)
    observability.install(app, settings)
    return app


try:
    app = create_app()
finally:
    # Also when the build fails (settings refused, say): whoever imported this module gets its
    # collector back as it was.
    gc.freeze()
    if _collector_was_enabled:
        gc.enable()
