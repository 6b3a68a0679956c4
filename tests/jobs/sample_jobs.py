"""Jobs of the tests' own: the worker processes under test import this module
(`manage.py worker --import tests.jobs.sample_jobs`)."""

import os
import time
from pathlib import Path

from core import jobs
from core.jobs.mail import Mailer


@jobs.job
def send_note(
    context: jobs.JobContext,
    *,
    recipient: str,
    marker: str,
    hold_first_attempt: float = 0,
    pid_file: str = "",
) -> None:
    """Mail a note naming the attempt that sent it. `hold_first_attempt` keeps the first
    attempt busy that long before it mails: a job to stop or kill half-way; `pid_file`
    receives the id of the process running it, so a test knows which worker to kill."""
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    if context.attempt == 1 and hold_first_attempt:
        time.sleep(hold_first_attempt)
    Mailer.from_settings(context.settings).deliver(
        recipient=recipient,
        subject=marker,
        text=f"attempt={context.attempt} job={context.job_id}",
        html=f"<p>attempt={context.attempt} job={context.job_id}</p>",
    )


def enqueue_and_hang(recipient: str, marker: str) -> None:
    """A producer to kill: enqueue a note, commit, say so on stdout, then wait to be killed."""
    from core.config import get_settings
    from core.data.db import Database

    database = Database.from_settings(get_settings())
    with database.session() as session:
        jobs.enqueue(session, send_note, recipient=recipient, marker=marker)
        session.commit()
    print("committed", flush=True)
    time.sleep(60)
