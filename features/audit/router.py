"""HTTP routes for the audit log: read only, for holders of audit:read."""

from typing import Annotated

from fastapi import APIRouter, Query

from core.errors import ForbiddenError, UnauthorizedError, error_responses
from core.http.caching import NOT_MODIFIED
from core.http.deps import DatabaseDep
from features.audit import permissions, service
from features.audit.models import AuditEventQuery, AuditEventsPublic
from features.users.dependencies import require
from features.users.models import AuthenticatedUser

router = APIRouter(
    prefix="/audit-events", tags=["audit"], responses=error_responses(UnauthorizedError)
)
Auditor = Annotated[AuthenticatedUser, require(permissions.READ)]


@router.get(
    "",
    response_model=AuditEventsPublic,
    summary="List audit events",
    responses={**error_responses(ForbiddenError), **NOT_MODIFIED},
)
async def list_events(
    _: Auditor, db: DatabaseDep, query: Annotated[AuditEventQuery, Query()]
) -> AuditEventsPublic:
    """Newest first, at most 100 per page: follow `next_cursor` for older ones. Filters
    combine: type, actor, subject, and a time range (`since` inclusive, `until` exclusive).
    The log cannot be changed through the API."""
    return await service.list_events(db, query=query)
