"""Audit log use cases: read it. Nothing here, or anywhere, edits or deletes an event; the
retention job (jobs.py) removes those past AUDIT_RETENTION_DAYS."""

from sqlmodel import Session

from core.data.audit import AuditEvent
from core.data.db import read_only
from core.data.pagination import fetch_page
from features.audit.models import AuditEventPublic, AuditEventQuery, AuditEventsPublic


@read_only
def list_events(session: Session, *, query: AuditEventQuery) -> AuditEventsPublic:
    """Newest first, through the index that serves the filter (the table's indexes)."""
    filters = {
        name: value
        for name, value in (
            ("type", query.type),
            ("actor_id", query.actor_id),
            ("subject_id", query.subject_id),
        )
        if value is not None
    }
    page = fetch_page(
        session,
        AuditEvent,
        AuditEventPublic,
        page=query,
        filter_by=filters,
        newest_first=True,
        since=query.since,
        until=query.until,
    )
    return AuditEventsPublic(items=page.items, next_cursor=page.next_cursor)
