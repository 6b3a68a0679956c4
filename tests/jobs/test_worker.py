"""The durable queue end to end: real worker processes (`manage.py worker`), a real PostgreSQL
database of this module's own, a real SMTP server, and processes killed for real.

Timings are shortened through the JOBS_* settings (FAST below): heartbeats every 0.3 s, a
worker silent for 1.5 s counts as dead, retries after 0.1 to 0.5 s.
"""

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session

from core import jobs
from core.jobs import queue as job_queue
from tests.conftest import ROOT, alembic_config
from tests.jobs import periodic_jobs
from tests.jobs.sample_jobs import send_note
from tests.smtp import Inbox
from tests.support import free_port, fresh_postgres_database, requires_postgres, server_env

pytestmark = requires_postgres

RECIPIENT = "someone@example.com"
NOTE = "tests.jobs.sample_jobs.send_note"
GONE = "tests.jobs.sample_jobs.renamed_away"
EVERY_SECOND = "tests.jobs.periodic_jobs.mark_every_second"
PURGE = "features.audit.jobs.purge_expired_events"
FAST = {
    "JOBS_CONCURRENCY": "2",
    "JOBS_MAX_ATTEMPTS": "10",
    "JOBS_RETRY_BASE_SECONDS": "0.2",
    "JOBS_RETRY_MAX_SECONDS": "0.5",
    "JOBS_HEARTBEAT_SECONDS": "0.3",
    "JOBS_STALLED_AFTER_SECONDS": "1.5",
    "JOBS_POLL_SECONDS": "0.2",
    "JOBS_STATS_SECONDS": "0.5",
    "JOBS_SHUTDOWN_TIMEOUT": "5",
    "JOBS_METRICS_PORT": "0",
    "LOG_LEVEL": "INFO",
    # The tests that run schedules say so (tests/jobs/test_periodic.py); here a due purge
    # would add a job to the counts these tests check.
    "JOBS_SCHEDULES": "false",
}
START_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A migrated database of this module's own: workers must see committed jobs."""
    with fresh_postgres_database() as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def queue_engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def empty_queue(queue_engine: Engine) -> None:
    jobs.use_in_process_runner(None)  # enqueue into PostgreSQL, whatever ran before
    with queue_engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers,"
                " procrastinate_periodic_defers"
            )
        )


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """An SMTP server on a port of its own, not yet listening: tests start it (or not)."""
    inbox = Inbox()
    yield inbox
    inbox.stop()


def worker_env(database_url: str, inbox: Inbox, **overrides: str) -> dict[str, str]:
    return server_env(
        database_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(inbox.port),
        SMTP_STARTTLS="false",
        **{**FAST, **overrides},
    )


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture
def start_workers(
    database_url: str, inbox: Inbox, queue_engine: Engine, tmp_path: Path
) -> Iterator[Callable[..., list[Worker]]]:
    """Start `count` `manage.py worker` processes at once and wait until each has registered
    in the database; all are killed at the end of the test."""
    started: list[Worker] = []

    def start(
        count: int = 1, *, jobs_module: str = "tests.jobs.sample_jobs", **overrides: str
    ) -> list[Worker]:
        known = newest_worker_id(queue_engine)
        new = []
        for _ in range(count):
            log_path = tmp_path / f"worker-{len(started)}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "manage.py", "worker", "--import", jobs_module],
                    cwd=ROOT,
                    env=worker_env(database_url, inbox, **overrides),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append(Worker(process, log_path))
            new.append(started[-1])
        wait_until(
            lambda: workers_since(queue_engine, known) >= count,
            START_TIMEOUT,
            lambda: "workers did not register:\n" + "\n".join(w.log() for w in new),
            alive=new,
        )
        return new

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
def start_worker(start_workers: Callable[..., list[Worker]]) -> Callable[..., Worker]:
    def start(**overrides: str) -> Worker:
        return start_workers(1, **overrides)[0]

    return start


def newest_worker_id(engine: Engine) -> int:
    with engine.connect() as connection:
        query = text("SELECT coalesce(max(id), 0) FROM procrastinate_workers")
        return int(connection.execute(query).scalar_one())


def workers_since(engine: Engine, known: int) -> int:
    """Workers registered after `known` (ids only grow; a killed worker leaves its row)."""
    with engine.connect() as connection:
        query = text("SELECT count(*) FROM procrastinate_workers WHERE id > :known")
        return int(connection.execute(query, {"known": known}).scalar_one())


def registered_workers(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one()
        )


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    explain: Callable[[], str],
    alive: Sequence[Worker] = (),
) -> None:
    """Poll `condition`; fail with `explain()` on timeout, or as soon as a worker that must
    stay alive exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for worker in alive:
            if worker.process.poll() is not None:
                pytest.fail(f"worker exited with {worker.process.returncode}: {explain()}")
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s: {explain()}")


def enqueue_note(
    engine: Engine, marker: str, *, hold_first_attempt: float = 0, pid_file: str = ""
) -> int:
    with Session(engine) as session:
        job_id = jobs.enqueue(
            session,
            send_note,
            recipient=RECIPIENT,
            marker=marker,
            hold_first_attempt=hold_first_attempt,
            pid_file=pid_file,
        )
        session.commit()
    assert job_id is not None
    return job_id


def job_state(engine: Engine, job_id: int) -> tuple[str, int] | None:
    """(status, attempts), or None once the job is gone (succeeded jobs are deleted)."""
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT status::text, attempts FROM procrastinate_jobs WHERE id = :id"),
            {"id": job_id},
        ).first()
    return None if row is None else (row[0], row[1])


def attempt_of(inbox: Inbox, marker: str) -> int:
    """The attempt that sent the note `marker` (it writes it in its body)."""
    with inbox.lock:
        bodies = [m.get_body(("plain",)) for m in inbox.messages if m["Subject"] == marker]
    assert len(bodies) == 1, f"{marker} arrived {len(bodies)} times"
    found = re.search(r"attempt=(\d+)", str(bodies[0].get_content()))  # type: ignore[union-attr]
    assert found is not None
    return int(found.group(1))


def manage_jobs(database_url: str, inbox: Inbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "jobs", *args],
        cwd=ROOT,
        env=worker_env(database_url, inbox),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_committed_job_survives_its_killed_producer_and_a_rolled_back_one_never_runs(
    database_url: str,
    queue_engine: Engine,
    inbox: Inbox,
    start_worker: Callable[..., Worker],
) -> None:
    """The web process dies right after its response (kill -9): the job it committed is
    in PostgreSQL and a worker started later delivers it. A rolled-back one never mails."""
    producer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests.jobs import sample_jobs; "
            f"sample_jobs.enqueue_and_hang({RECIPIENT!r}, 'from a dead producer')",
        ],
        cwd=ROOT,
        env=worker_env(database_url, inbox),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert producer.stdout is not None
        assert producer.stdout.readline().strip() == b"committed"
    finally:
        producer.kill()
        producer.wait()
    with Session(queue_engine) as session:
        jobs.enqueue(session, send_note, recipient=RECIPIENT, marker="rolled back")
        session.rollback()
    inbox.start()
    start_worker()
    enqueue_note(queue_engine, "sentinel, committed after the rolled-back one")
    inbox.wait_for(2, timeout=15)
    time.sleep(0.5)  # time enough for a third mail, if one were coming
    assert sorted(inbox.subjects()) == [
        "from a dead producer",
        "sentinel, committed after the rolled-back one",
    ]


def test_mail_queued_while_smtp_is_down_is_delivered_once_it_is_back(
    queue_engine: Engine, inbox: Inbox, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker()
    job_id = enqueue_note(queue_engine, "sent after the outage")
    wait_until(
        lambda: "failed (attempt 2 of 10), retrying" in worker.log(), 15, worker.log, [worker]
    )
    assert RECIPIENT not in worker.log()  # the error line masks the address
    inbox.start()
    inbox.wait_for(1, timeout=15)
    assert attempt_of(inbox, "sent after the outage") >= 3
    wait_until(lambda: job_state(queue_engine, job_id) is None, 5, worker.log)  # done, deleted
    assert re.search(rf"job {job_id} \S+send_note succeeded \(attempt \d+", worker.log())


def test_a_job_whose_worker_is_killed_mid_way_runs_on_another_worker(
    queue_engine: Engine,
    inbox: Inbox,
    start_workers: Callable[..., list[Worker]],
    tmp_path: Path,
) -> None:
    inbox.start()
    workers = start_workers(2)
    pid_file = tmp_path / "holder.pid"
    job_id = enqueue_note(
        queue_engine, "outlived its worker", hold_first_attempt=30, pid_file=str(pid_file)
    )
    wait_until(lambda: job_state(queue_engine, job_id) == ("doing", 0), 10, str, workers)
    wait_until(pid_file.exists, 10, str, workers)
    (doomed,) = [w for w in workers if w.process.pid == int(pid_file.read_text())]
    (rescuer,) = [w for w in workers if w is not doomed]
    doomed.signal(signal.SIGKILL)
    doomed.wait(timeout=5)
    killed_at = time.monotonic()
    inbox.wait_for(1, timeout=20)
    # JOBS_STALLED_AFTER_SECONDS + JOBS_HEARTBEAT_SECONDS + JOBS_POLL_SECONDS is 2 s here.
    assert time.monotonic() - killed_at < 8
    assert attempt_of(inbox, "outlived its worker") == 2
    assert f"job {job_id} {NOTE}: its worker stopped answering during attempt 1; queued again" in (
        rescuer.log()
    )


def test_fifty_jobs_over_two_workers_are_each_delivered_once(
    queue_engine: Engine, inbox: Inbox, start_workers: Callable[..., list[Worker]]
) -> None:
    inbox.start()
    workers = start_workers(2)
    markers = [f"note {n:02d}" for n in range(50)]
    with Session(queue_engine) as session:
        for marker in markers:
            # 50 ms of work each, so both workers get a share
            jobs.enqueue(
                session, send_note, recipient=RECIPIENT, marker=marker, hold_first_attempt=0.05
            )
        session.commit()
    inbox.wait_for(50, timeout=30)
    time.sleep(0.5)  # a duplicate would show up now
    assert sorted(inbox.subjects()) == markers
    done = [len(re.findall(r"send_note succeeded", worker.log())) for worker in workers]
    assert sum(done) == 50
    assert all(done), f"one worker did everything: {done}"
    wait_until(
        lambda: "job queue: todo=0 doing=0 failed=0, none waiting" in workers[0].log(),
        5,
        workers[0].log,
    )


def test_exhausted_jobs_are_kept_failed_and_the_command_lists_and_retries_them(
    database_url: str, queue_engine: Engine, inbox: Inbox, start_worker: Callable[..., Worker]
) -> None:
    # JSON log lines, as in production: they carry every extra field a record has.
    worker = start_worker(JOBS_MAX_ATTEMPTS="2", ENVIRONMENT="production")
    first = enqueue_note(queue_engine, "first dead letter")
    second = enqueue_note(queue_engine, "second dead letter")
    with Session(queue_engine) as session:  # a job whose code was renamed away
        stranded = job_queue.defer(session, GONE, json.dumps({"recipient": RECIPIENT}))
        session.commit()
    wait_until(
        lambda: (
            job_state(queue_engine, first) == job_state(queue_engine, second) == ("failed", 2)
            and job_state(queue_engine, stranded) == ("failed", 1)
        ),
        15,
        worker.log,
        [worker],
    )
    assert f"job {first} {NOTE} failed for good after 2 attempts" in worker.log()
    assert "Task was not found" in worker.log()
    assert RECIPIENT.split("@")[0] not in worker.log()  # neither arguments nor error texts

    listing = manage_jobs(database_url, inbox, "list", "--status", "failed")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    header = " ".join(lines[0].split())
    assert header == "ID STATUS TRIES JOB ENQUEUED (UTC) LAST CHANGE (UTC) ARGUMENTS"
    assert lines[1].split()[:4] == [str(stranded), "failed", "1", GONE]
    assert lines[2].split()[:4] == [str(second), "failed", "2", NOTE]
    assert lines[3].split()[:4] == [str(first), "failed", "2", NOTE]
    assert lines[1].endswith("recipient")
    assert lines[2].endswith("hold_first_attempt, marker, pid_file, recipient")
    assert "todo=0 doing=0 failed=3" in lines[-1]
    assert RECIPIENT not in listing.stdout
    assert "dead letter" not in listing.stdout

    inbox.start()
    retried = manage_jobs(database_url, inbox, "retry", str(first), "999999")
    assert retried.returncode == 1  # one id was not a failed job
    assert f"queued again, each with a fresh set of attempts: {first}" in retried.stdout
    assert "left alone: 999999" in retried.stdout
    inbox.wait_for(1, timeout=15)
    assert attempt_of(inbox, "first dead letter") == 1  # a fresh set of attempts
    assert job_state(queue_engine, second) == ("failed", 2)

    everything = manage_jobs(database_url, inbox, "retry", "--all-failed")
    assert everything.returncode == 0, everything.stdout
    assert f"attempts: {second}, {stranded}" in everything.stdout
    inbox.wait_for(2, timeout=15)
    assert sorted(inbox.subjects()) == ["first dead letter", "second dead letter"]
    wait_until(lambda: job_state(queue_engine, stranded) == ("failed", 1), 15, worker.log)


def test_sigterm_lets_jobs_in_hand_finish_and_releases_those_that_outlive_the_timeout(
    queue_engine: Engine, inbox: Inbox, start_worker: Callable[..., Worker]
) -> None:
    inbox.start()
    worker = start_worker(JOBS_SHUTDOWN_TIMEOUT="2.5")  # two jobs at once
    short = enqueue_note(queue_engine, "finished at shutdown", hold_first_attempt=1)
    long = enqueue_note(queue_engine, "released at shutdown", hold_first_attempt=30)
    wait_until(
        lambda: job_state(queue_engine, short) == job_state(queue_engine, long) == ("doing", 0),
        10,
        worker.log,
        [worker],
    )
    stopped = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    # JOBS_SHUTDOWN_TIMEOUT (2.5 s), then a few round trips to release the long job and say
    # goodbye: bounded, and far below the 30 s the long job wants.
    assert time.monotonic() - stopped < 6
    assert inbox.subjects() == ["finished at shutdown"]  # sent before the process ended
    assert attempt_of(inbox, "finished at shutdown") == 1
    assert job_state(queue_engine, short) is None
    assert job_state(queue_engine, long) == ("todo", 1)
    assert f"job {long} {NOTE} released at shutdown (attempt 1); it will run again" in worker.log()
    assert registered_workers(queue_engine) == 0  # it unregistered
    start_worker()
    inbox.wait_for(2, timeout=15)
    assert attempt_of(inbox, "released at shutdown") == 2


def test_a_worker_serves_its_job_outcomes_to_prometheus(
    queue_engine: Engine, inbox: Inbox, start_worker: Callable[..., Worker]
) -> None:
    port = free_port()
    inbox.start()
    worker = start_worker(JOBS_METRICS_PORT=str(port))
    enqueue_note(queue_engine, "counted")
    inbox.wait_for(1, timeout=15)
    succeeded = f'app_jobs_processed_total{{job_name="{NOTE}",outcome="succeeded"}} 1.0'

    def scraped() -> str:
        try:
            return httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx2.HTTPError:
            return ""

    wait_until(lambda: succeeded in scraped(), 10, worker.log, [worker])


def test_periodic_jobs_run_once_per_due_time_however_many_workers_defer_them(
    start_workers: Callable[..., list[Worker]], tmp_path: Path
) -> None:
    """Both workers defer every due time; procrastinate_periodic_defers lets one through."""
    marks = tmp_path / "marks"
    workers = start_workers(
        2,
        jobs_module="tests.jobs.periodic_jobs",
        JOBS_SCHEDULES="true",
        **{periodic_jobs.MARKS_FILE_VARIABLE: str(marks)},
    )

    def runs() -> list[str]:
        return marks.read_text().split("\n")[:-1] if marks.exists() else []

    wait_until(lambda: len(runs()) >= 5, 20, lambda: "\n".join(w.log() for w in workers), workers)
    for worker in workers:
        worker.process.kill()
        worker.wait(timeout=10)
    due_times = collections.Counter(int(line.split()[0]) for line in runs())
    assert max(due_times.values()) == 1, due_times  # no due time ran twice
    assert max(due_times) - min(due_times) == len(due_times) - 1  # none skipped
    for worker in workers:
        log = worker.log()
        assert f"{PURGE} (17 * * * *)" in log
        assert f"{EVERY_SECOND} (* * * * * *)" in log
