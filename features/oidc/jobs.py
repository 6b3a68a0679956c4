"""The OIDC feature's background job: sign-in attempts and one-time codes whose time is over
are deleted every ten minutes (they are refused once expired whether or not they are)."""

import logging

from core import jobs
from features.oidc import service

logger = logging.getLogger("app.oidc")


@jobs.periodic("*/10 * * * *")
def purge_expired_sign_in_attempts(context: jobs.JobContext) -> None:
    """Safe to repeat and to run on several workers at once: each deletes what has expired
    when it looks."""
    with context.database.session() as session:
        purged = service.purge_expired(session)
    logger.info("expired OIDC sign-in attempts and codes purged: %d", purged)
