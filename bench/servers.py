"""Server processes under test: started the way production starts them, watched through /proc.

Each server runs in its own session, so stopping it means signalling its process group, and
the CPU it burns is the sum over the process tree (the master and its workers).
"""

import compileall
import contextlib
import http.client
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The app under test: this checkout, or another one (BENCH_APP_ROOT, e.g. a worktree of an
# earlier commit), so two versions are measured by the same bench against the same ceiling.
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT") or ROOT).resolve()
BIN = Path(sys.executable).parent
APP_TARGETS = {"app": "main:app", "bare": "bench.bare_app:app"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 5.0

# Every server this process started and has not stopped yet, for the final clean-up.
_running: dict[int, "Server"] = {}


@dataclass
class Server:
    app: str  # "app" or "bare"
    shape: str  # "gunicorn" or "uvicorn"
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def label(self) -> str:
        workers = len(worker_pids(self.pid))
        return f"{self.shape} x{workers}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# What the production image compiles when it is built (Dockerfile), for the ceiling as well: with
# the bytecode in place neither server compiles source at start, even where the environment
# says PYTHONDONTWRITEBYTECODE (as the image's does).
COMPILED_SOURCES = ("core", "features", "main.py", "gunicorn.conf.py")


def compile_bytecode() -> None:
    sources = [APP_ROOT / source for source in COMPILED_SOURCES]
    sources += [ROOT / "gunicorn.conf.py", ROOT / "bench" / "bare_app.py"]
    for path in sources:
        if path.is_dir():
            compiled = compileall.compile_dir(path, quiet=1)
        else:
            compiled = compileall.compile_file(path, quiet=1)
        if not compiled:
            raise RuntimeError(f"{path} does not compile")


def production_env(database_url: str, bcrypt_rounds: int) -> dict[str, str]:
    """The production settings, with a login limit the benchmark cannot reach, and Redis as
    production has it (BENCH_REDIS_URL, else the local server's database 14): the shared
    cache and rate limits. Each run signs its entries with a fresh SECRET_KEY, so whatever an
    earlier run left there is never served."""
    env = dict(os.environ)
    env.update(
        REDIS_URL=os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/14",
    )
    env.update(
        DATABASE_URL=database_url,
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(36),  # 48 characters
        BCRYPT_ROUNDS=str(bcrypt_rounds),
        LOGIN_RATE_LIMIT="1000000/minute",
        # Counted as in production, never reached: in shares of 100 hits (core/http/ratelimit.py
        # `hit_leased`; the default 600 a minute takes shares of 6).
        API_KEY_RATE_LIMIT="100000000/minute",
        LOG_LEVEL="WARNING",
    )
    return env


def root_of(app: str) -> Path:
    return APP_ROOT if app == "app" else ROOT


def command(app: str, shape: str, port: int) -> list[str]:
    target = APP_TARGETS[app]
    if shape == "uvicorn":
        return [
            str(BIN / "uvicorn"),
            target,
            "--workers",
            "1",
            "--no-access-log",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    # Command-line flags override the config file: only the address and the control
    # socket (several masters may run at once here) differ from production.
    bind = ["-b", f"127.0.0.1:{port}", "--no-control-socket"]
    config = root_of(app) / "gunicorn.conf.py"
    if config.exists():
        return [str(BIN / "gunicorn"), "-c", str(config), *bind, target]
    workers = ["-k", "uvicorn_worker.UvicornWorker", "-w", "2"]
    return [str(BIN / "gunicorn"), *workers, *bind, target]


def application_name(app: str) -> str:
    return f"bench-{app}-{os.getpid()}"


def start(app: str, shape: str, port: int, env: dict[str, str], log_dir: Path) -> Server:
    log_path = log_dir / f"{app}-{shape}-{port}.log"
    with log_path.open("ab") as log:
        started_at = time.monotonic()
        process = subprocess.Popen(  # noqa: S603
            command(app, shape, port),
            cwd=root_of(app),
            # libpq reads PGAPPNAME: the database sessions of each server can then be told
            # apart in pg_stat_activity, and their CPU time read.
            env=dict(env, PGAPPNAME=application_name(app)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(app, shape, port, process, log_path, started_at)
    _running[server.pid] = server
    return server


def http_status(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def wait_until_ready(server: Server, path: str) -> float:
    """Seconds from process start to the first 200 on `path`."""
    deadline = server.started_at + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.app} server exited:\n{server.log_tail()}")
        try:
            if http_status(server.port, path) == 200:
                return time.monotonic() - server.started_at
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{server.app} server not ready in {READY_TIMEOUT_SECONDS}s")


def stop(server: Server) -> None:
    _running.pop(server.pid, None)
    if server.process.poll() is not None:
        return
    _signal_group(server.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(server.pid, signal.SIGKILL)
        server.process.wait()
    # Workers that outlived their master would keep the port and the database busy.
    _signal_group(server.pid, signal.SIGKILL)


def stop_all() -> None:
    for server in list(_running.values()):
        stop(server)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


# --- /proc -----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree_pids(root: int) -> list[int]:
    children = _children_by_parent()
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        pending.extend(children.get(pid, []))
    return pids


def worker_pids(root: int) -> list[int]:
    """The processes that serve requests: a master's children, or the root when it has none."""
    return _children_by_parent().get(root, []) or [root]


def cpu_seconds(root: int) -> float:
    """User plus system CPU time of the whole process tree, so far."""
    return processes_cpu_seconds(tree_pids(root))


def processes_cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def settled_cpu_seconds(root: int, timeout: float = 5.0) -> float:
    """CPU time once the tree has gone quiet: requests still in flight are counted in full."""
    deadline = time.monotonic() + timeout
    previous = cpu_seconds(root)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = cpu_seconds(root)
        if current == previous:
            return current
        previous = current
    return previous


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
