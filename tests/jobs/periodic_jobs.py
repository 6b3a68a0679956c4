"""Periodic jobs of the tests' own, every second: imported only by the tests that run
schedules (tests/jobs/test_periodic.py), and by the worker processes they start
(`manage.py worker --import tests.jobs.periodic_jobs`)."""

import os

from core import jobs
from features.audit.jobs import purge_expired_events

# Where `mark_every_second` appends one line per run: its due time and the process.
MARKS_FILE_VARIABLE = "PERIODIC_MARKS_FILE"


@jobs.periodic("* * * * * *")
def mark_every_second(context: jobs.JobContext) -> None:
    path = os.environ.get(MARKS_FILE_VARIABLE)
    if not path or context.scheduled_at is None:
        return
    line = f"{context.scheduled_at.timestamp():.0f} {os.getpid()}\n"
    # One write on an O_APPEND descriptor: lines from two processes never interleave.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


@jobs.periodic("* * * * * *")
def purge_audit_every_second(context: jobs.JobContext) -> None:
    """The real retention purge, on a schedule a test can wait for."""
    purge_expired_events.run(context, {})
