"""The directory where gunicorn's workers share their metrics (PROMETHEUS_MULTIPROC_DIR).

prometheus-client's multiprocess mode gives every worker its own memory-mapped files,
`counter_<pid>.db`, `histogram_<pid>.db`, `gauge_livesum_<pid>.db`, and a scrape adds up
every file in the directory. Left alone, the files of exited workers pile up (gunicorn's
max_requests recycles workers all day) and every scrape reads more of them. So when gunicorn
reaps a worker, `retire_worker` folds its counters and histograms into one `*_archive.db`
file per type and deletes its files: totals are kept exactly and the directory holds the
live workers plus two archives, however many workers came and went.

A scrape and a retirement must not interleave (a scrape could read a worker's counts both in
its file and in the archive, or in neither), so both take a lock file in the directory:
shared for scrapes, exclusive for the retirement, which takes milliseconds.

Used by gunicorn.conf.py in the master process: keep imports light.
"""

import contextlib
import fcntl
import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"
# Types whose samples are totals since start: kept after a worker exits. Gauges are not:
# every gauge here uses a live* mode, whose files mark_process_dead removes.
ACCUMULATED_TYPES = ("counter", "histogram", "summary")
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def prepare(directory: str) -> None:
    """Create the directory, or empty it: values left by an earlier run would be added in.

    Only what is inside is removed, so the directory may be a mount (tmpfs, emptyDir).
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_file() or entry.is_symlink():
            entry.unlink()


@contextlib.contextmanager
def locked(directory: str, *, exclusive: bool) -> Iterator[None]:
    with open(os.path.join(directory, LOCK_FILE), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def retire_worker(directory: str, pid: int) -> None:
    """Fold an exited worker's totals into the archives and remove its files."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    with locked(directory, exclusive=True):
        for kind in ACCUMULATED_TYPES:
            worker_file = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(worker_file):
                continue
            archive_file = os.path.join(directory, f"{kind}_archive.db")
            totals: dict[str, float] = {}
            for path in (archive_file, worker_file):
                if os.path.exists(path):
                    for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(
                        path
                    ):
                        totals[key] = totals.get(key, 0.0) + value
            # Written beside the archive and renamed over it: a crash leaves the old archive
            # and the worker's file, never half of the sum. (The name does not end in .db,
            # so no scrape reads it.)
            staging_file = archive_file + ".new"
            with contextlib.suppress(FileNotFoundError):
                os.remove(staging_file)
            staging = MmapedDict(staging_file)
            try:
                for key, value in totals.items():
                    staging.write_value(key, value, 0.0)
            finally:
                staging.close()
            os.replace(staging_file, archive_file)
            os.remove(worker_file)
        multiprocess.mark_process_dead(pid, directory)


def metric_files(directory: str) -> list[str]:
    return glob.glob(os.path.join(directory, "*.db"))


def live_worker_pids(directory: str) -> list[int]:
    """Processes whose live gauges are in the directory: the workers gunicorn has not reaped.

    Every worker writes live gauges from the moment it enables metrics, and its files go
    when it is reaped, so this is the set of workers without asking gunicorn.
    """
    pids = set()
    for name in os.listdir(directory):
        match = _LIVE_GAUGE_FILE.match(name)
        if match:
            pids.add(int(match.group(1)))
    return sorted(pids)
