"""Gunicorn settings for production: `gunicorn -c gunicorn.conf.py main:app`.

Gunicorn is the process manager (restarts crashed workers, stops them gracefully); each worker
is a uvicorn event loop running the ASGI app. Every value can be changed through the
environment, so the image stays the same from one deploy to the next.
"""

import gc
import os
from typing import Any


def _default_worker_count() -> int:
    # One async worker per CPU: each worker already serves many requests at once on its event
    # loop, so the sync-worker rule of 2 x CPUs + 1 would only add memory and context switches.
    # CPU affinity reflects a cpuset limit (docker --cpuset-cpus); a CPU quota (--cpus) is
    # invisible here, so set WEB_CONCURRENCY explicitly in that case.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY") or 0) or _default_worker_count()

# Inside a container the app must listen on every interface to be reachable; the host decides
# what is published (compose publishes only the load balancer).
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"

# On SIGTERM a worker stops accepting connections and finishes the requests it has; a worker
# still busy after graceful_timeout is killed. Keep the orchestrator's stop timeout above this
# (compose.yml: stop_grace_period).
graceful_timeout = 30
# A worker whose event loop has not reported in for this long is restarted: it is stuck.
timeout = 60
# Longer than nginx's upstream keepalive_timeout (60s in deploy/nginx.conf), so the proxy is
# always the side that closes an idle connection and never sends a request on a socket this
# side is closing.
keepalive = 75

# Which peers may set X-Forwarded-For / X-Forwarded-Proto. The client address feeds the
# per-IP login rate limit, so trust only the load balancer: a comma-separated list of IPs or
# CIDR networks, or "*" where nothing but the load balancer can reach the app.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Gunicorn 25+ opens a control socket under $HOME by default; the app does not use it, and
# the container's home directory is not writable.
control_socket_disable = True

# The app logs one line per request itself (core/observability/logging.py: request id, status,
# duration; JSON in production), so the server's own access log would only repeat it at a CPU
# cost.
# Set ACCESS_LOG=1 to have it anyway; these formatters add the time and the worker's pid.
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
accesslog = "-" if os.environ.get("ACCESS_LOG") == "1" else None
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    # Leave the root logger alone, so the app's own logging set-up (LOG_LEVEL) applies.
    "root": {"handlers": []},
    "formatters": {
        "server": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        },
        "access": {"format": "%(asctime)s [%(process)d] access %(message)s"},
    },
    "handlers": {
        "server": {
            "class": "logging.StreamHandler",
            "formatter": "server",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["server"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}


# Importing the app builds about 110,000 objects (modules, models, routes) that live as long as
# the worker. The cyclic garbage collector would walk them again and again while they are
# being created, and again in every full collection while serving. So a worker imports the
# app with the collector off, then gc.freeze() moves everything built to a generation no
# collection scans. Importing main this way costs 741 instead of 810 ms of CPU (fastest of 9
# fresh interpreters each, bytecode compiled; medians 896 and 1100 ms on a busy machine).
def post_fork(_server: Any, _worker: Any) -> None:
    gc.disable()


def post_worker_init(_worker: Any) -> None:
    gc.freeze()
    gc.enable()


# --- Prometheus metrics across workers (core/observability/metrics.py and metrics_files.py) ---
# Each worker writes its metrics to files in this directory and /metrics adds them all up, so
# a scrape reads the same totals whichever worker answers. The variable is set here, in the
# master, so every worker inherits it before it imports anything. /tmp is writable in the
# image's containers (a tmpfs in compose, an emptyDir on Kubernetes); the master's pid in the
# default name keeps two servers on one machine apart.
_default_metrics_directory = f"/tmp/fastapi-accounts-metrics-{os.getpid()}"  # noqa: S108
_metrics_directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or _default_metrics_directory


def on_starting(server: Any) -> None:
    """Before any worker starts: an empty directory, or an earlier run's counts add in. Set in
    the master's environment here, not when this file is read, so reading it changes
    nothing; every worker forked later inherits it."""
    from core.observability import metrics_files

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_directory
    metrics_files.prepare(_metrics_directory)


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (crash, max_requests, shutdown): keep its totals, drop its gauges."""
    from core.observability import metrics_files

    metrics_files.retire_worker(_metrics_directory, worker.pid)


def on_exit(server: Any) -> None:
    """Remove the directory this file created; one named in the environment is left alone."""
    if _metrics_directory == _default_metrics_directory:
        import shutil

        shutil.rmtree(_metrics_directory, ignore_errors=True)
