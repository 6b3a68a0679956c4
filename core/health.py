"""Liveness and readiness probes for load balancers and orchestrators."""

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlmodel import Session

from core.db import Database
from core.ratelimit import RateLimiter

router = APIRouter(tags=["health"])


class HealthStatus(BaseModel):
    status: str


class ReadinessStatus(BaseModel):
    status: str
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
    responses={503: {"model": ReadinessStatus, "description": "A dependency is down"}},
)
async def ready(request: Request) -> JSONResponse:
    """Ready when the database (and Redis, if configured) answer; 503 otherwise."""
    database: Database = request.app.state.database
    limiter: RateLimiter = request.app.state.rate_limiter
    database_state = redis_state = "ok"
    try:
        await database.run(_select_one)
    except Exception:
        database_state = "unavailable"
    if limiter.shared:
        try:
            if not await limiter.ping():
                redis_state = "unavailable"
        except Exception:
            redis_state = "unavailable"
    else:
        redis_state = "not configured"
    healthy = "unavailable" not in (database_state, redis_state)
    body = ReadinessStatus(
        status="ok" if healthy else "unavailable", database=database_state, redis=redis_state
    )
    return JSONResponse(
        body.model_dump(),
        status_code=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
    )
