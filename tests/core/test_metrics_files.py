"""The multiprocess metrics directory: exited workers' totals folded into archives, exactly.

The workers here are real processes writing through prometheus-client's multiprocess mode,
as gunicorn's workers do; they exit before the directory is tidied, as a recycled worker
does.
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector

from core.observability import metrics_files

WORKER = """
import os
import sys
from prometheus_client import Counter, Gauge, Histogram

Counter("jobs", "Jobs.", ["kind"]).labels("mail").inc(int(sys.argv[1]))
latency = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
latency.observe(0.05)
latency.observe(0.5)
Gauge("busy", "Busy.", multiprocess_mode="livesum").set(1)
print(os.getpid())
"""


def run_worker(directory: Path, jobs: int) -> int:
    """Start a process that counts `jobs`, let it exit, and return its pid."""
    process = subprocess.run(
        [sys.executable, "-c", WORKER, str(jobs)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(process.stdout)


def totals(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in MultiProcessCollector.merge(metrics_files.metric_files(str(directory)))
        for sample in family.samples
    }


def test_retired_workers_keep_their_totals_and_leave_two_archives(tmp_path: Path) -> None:
    pids = [run_worker(tmp_path, jobs) for jobs in (1, 2, 3)]
    assert len(set(pids)) == 3
    before = totals(tmp_path)
    assert before[("jobs_total", (("kind", "mail"),))] == 6
    assert before[("latency_seconds_count", ())] == 6
    assert before[("latency_seconds_bucket", (("le", "0.1"),))] == 3

    for pid in pids:
        metrics_files.retire_worker(str(tmp_path), pid)
        after = totals(tmp_path)
        # Every total is unchanged; only the live gauge of the retired worker is gone.
        assert {k: v for k, v in after.items() if k[0] != "busy"} == {
            k: v for k, v in before.items() if k[0] != "busy"
        }

    assert sorted(os.listdir(tmp_path)) == [
        metrics_files.LOCK_FILE,
        "counter_archive.db",
        "histogram_archive.db",
    ]
    assert metrics_files.live_worker_pids(str(tmp_path)) == []


def test_live_workers_are_those_whose_live_gauges_remain(tmp_path: Path) -> None:
    first, second = run_worker(tmp_path, 1), run_worker(tmp_path, 1)
    assert metrics_files.live_worker_pids(str(tmp_path)) == sorted([first, second])
    metrics_files.retire_worker(str(tmp_path), first)
    assert metrics_files.live_worker_pids(str(tmp_path)) == [second]


def test_retiring_twice_or_an_unknown_worker_changes_nothing(tmp_path: Path) -> None:
    pid = run_worker(tmp_path, 2)
    metrics_files.retire_worker(str(tmp_path), pid)
    before = totals(tmp_path)
    metrics_files.retire_worker(str(tmp_path), pid)
    metrics_files.retire_worker(str(tmp_path), 999_999_999)
    assert totals(tmp_path) == before


def test_prepare_empties_the_directory_and_keeps_it(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    metrics_files.prepare(str(directory))
    run_worker(directory, 5)
    metrics_files.prepare(str(directory))
    assert directory.is_dir()
    assert list(directory.iterdir()) == []


def test_a_scrape_waits_while_a_worker_is_retired(tmp_path: Path) -> None:
    waited = []

    def scrape() -> None:
        started = time.monotonic()
        with metrics_files.locked(str(tmp_path), exclusive=False):
            waited.append(time.monotonic() - started)

    with metrics_files.locked(str(tmp_path), exclusive=True):
        reader = threading.Thread(target=scrape)
        reader.start()
        time.sleep(0.2)
        assert waited == []  # still blocked
    reader.join(5)
    assert len(waited) == 1
    assert waited[0] >= 0.2
