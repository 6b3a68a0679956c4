"""Liveness and readiness probes for load balancers and orchestrators."""

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlmodel import Session

from core.cache import Cache
from core.data.db import Database

router = APIRouter(tags=["health"])


class HealthStatus(BaseModel):
    status: str


class ReadinessStatus(BaseModel):
    status: str = Field(description="ok; degraded (serving, Redis down); unavailable")
    database: str
    redis: str


def _select_one(session: Session) -> None:
    session.execute(text("SELECT 1"))


_LIVE = b'{"status":"ok"}'


@router.get("/health", response_model=HealthStatus, summary="Liveness")
async def health() -> Response:
    """The process is up and serving. Touches nothing else."""
    # Probes call this several times a second per load balancer: answer with fixed bytes.
    return Response(_LIVE, media_type="application/json")


@router.get(
    "/health/ready",
    response_model=ReadinessStatus,
    summary="Readiness",
    responses={503: {"model": ReadinessStatus, "description": "The database is down"}},
)
async def ready(request: Request) -> JSONResponse:
    """503 when the database does not answer. A configured Redis that does not answer shows
    as `degraded` with 200: the app keeps serving (the cache reads the database, rate limits
    count per process), so taking every replica out of rotation would only make it worse."""
    database: Database = request.app.state.database
    cache: Cache = request.app.state.cache
    database_state = "ok"
    try:
        await database.run(_select_one)
    except Exception:
        database_state = "unavailable"
    redis_state = "not configured"
    if cache.shared:
        redis_state = "ok" if await cache.ping() else "unavailable"
    if database_state != "ok":
        overall = "unavailable"
    elif redis_state == "unavailable":
        overall = "degraded"
    else:
        overall = "ok"
    body = ReadinessStatus(status=overall, database=database_state, redis=redis_state)
    return JSONResponse(
        body.model_dump(),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE
        if overall == "unavailable"
        else status.HTTP_200_OK,
    )
