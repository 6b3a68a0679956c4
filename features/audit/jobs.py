"""The audit feature's background job: the retention purge, every hour."""

import logging
from datetime import timedelta

from core import jobs
from core.data import audit
from core.data.clock import utc_now

logger = logging.getLogger("app.audit")

# A run deletes at most this many batches (a million events by default); a purge further
# behind than that catches up over the next runs instead of running for hours.
MAX_BATCHES_PER_RUN = 1000


@jobs.periodic("17 * * * *")
def purge_expired_events(context: jobs.JobContext) -> None:
    """Delete the events older than AUDIT_RETENTION_DAYS, a batch per transaction. Safe to
    repeat and to run on several workers at once: each deletes what is old when it looks."""
    cutoff = utc_now() - timedelta(days=context.settings.AUDIT_RETENTION_DAYS)
    purged = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        with context.database.session() as session:
            deleted = audit.purge_before(session, cutoff)
        purged += deleted
        if deleted < audit.PURGE_BATCH_SIZE:
            break
    else:
        logger.warning("audit events purge stopped after %d events; the next run goes on", purged)
    logger.info("audit events purged: %d from before %s", purged, cutoff.isoformat())
