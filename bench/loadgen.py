"""wrk runs and their results.

Every run carries a small Lua script whose `done` hook prints the exact counters and latency
percentiles as one JSON line, so nothing depends on wrk's human-oriented, rounded summary.
"""

import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

RESULT_MARKER = "BENCH_RESULT "
REPORT_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n',
    "BENCH_RESULT ", summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

_running: dict[int, subprocess.Popen[str]] = {}


@dataclass(frozen=True)
class Request:
    method: str = "GET"
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    # Replace the path's `limit=100` with a larger number no other request of the run sent:
    # the list caps it to the same page of 100, but a response cache keys on the parameter
    # as given, so every request misses it (and stores its answer, as a real miss does).
    unique_limit: bool = False


# Limits stay under the API's 1,000,000; each wrk run takes a window of its own, so runs
# within a cache TTL of each other never repeat a value.
UNIQUE_LIMIT_WINDOW = 45_000
UNIQUE_LIMIT_WINDOWS = 21
_unique_limit_runs = 0

UNIQUE_LIMIT = """
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("first", threads - 1)
end
local sent = 0
request = function()
  local value = WINDOW_START + (first + sent * 2) % WINDOW_SIZE
  sent = sent + 1
  return wrk.format(nil, (string.gsub(wrk.path, "limit=100", "limit=" .. value)))
end
"""


@dataclass(frozen=True)
class Load:
    port: int
    path: str
    connections: int
    seconds: int
    request: Request = Request()
    # wrk counts a request as timed out after this long (its default is 2 s).
    timeout_seconds: float = 2.0


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    timeouts: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "errors": self.errors}


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _script(request: Request, directory: Path) -> Path:
    lines = [f"wrk.method = {json.dumps(request.method)}"]
    if request.body:
        lines.append(f"wrk.body = {json.dumps(request.body)}")
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in request.headers]
    if request.unique_limit:
        global _unique_limit_runs
        window = _unique_limit_runs % UNIQUE_LIMIT_WINDOWS
        _unique_limit_runs += 1
        lines.append(f"WINDOW_START = {101 + window * UNIQUE_LIMIT_WINDOW}")
        lines.append(f"WINDOW_SIZE = {UNIQUE_LIMIT_WINDOW}")
        lines.append(UNIQUE_LIMIT)
    text = "\n".join(lines) + "\n" + REPORT_HOOK
    path = directory / f"wrk-{hashlib.sha256(text.encode()).hexdigest()[:12]}.lua"
    path.write_text(text)
    return path


def start(load: Load, script_dir: Path) -> subprocess.Popen[str]:
    threads = 2 if load.connections >= 2 else 1
    process = subprocess.Popen(  # noqa: S603
        [
            wrk_path() or "wrk",
            f"-t{threads}",
            f"-c{load.connections}",
            f"-d{load.seconds}s",
            f"--timeout={load.timeout_seconds:g}s",
            "--latency",
            "-s",
            str(_script(load.request, script_dir)),
            f"http://127.0.0.1:{load.port}{load.path}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _running[process.pid] = process
    return process


def finish(process: subprocess.Popen[str]) -> WrkResult:
    output, _ = process.communicate()
    _running.pop(process.pid, None)
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            raw = json.loads(line[len(RESULT_MARKER) :])
            seconds = raw["duration_us"] / 1e6
            return WrkResult(
                requests=raw["requests"],
                seconds=seconds,
                requests_per_second=raw["requests"] / seconds if seconds else 0.0,
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                non_2xx=raw["status"],
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
                timeouts=raw["timeout"],
            )
    raise RuntimeError(f"wrk gave no result (exit {process.returncode}):\n{output}")


def run(load: Load, script_dir: Path) -> WrkResult:
    return finish(start(load, script_dir))


def kill_all() -> None:
    for process in list(_running.values()):
        process.kill()
        process.wait()
        _running.pop(process.pid, None)
