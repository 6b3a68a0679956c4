"""Logging set-up and the one-line-per-request log with a request id.

Production writes JSON lines (one object per line, for log shippers); development writes
readable lines. The request id comes from `X-Request-ID` when a proxy or client sent a sane
one, otherwise it is generated, and it is echoed back on the response either way.
"""

import itertools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.observability.masking import mask_addresses

REQUEST_ID_HEADER = b"x-request-id"
# Anything else (newlines, huge values) could forge or flood log lines: replace it.
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
# Probes and scrapes hit these every few seconds per load balancer or Prometheus: they are
# not logged (they would drown real traffic), not traced, and never wait for a place among the
# requests in progress (they must answer while a worker is saturated).
PROBE_PATHS = frozenset({"/health", "/health/ready", "/metrics"})

request_logger = logging.getLogger("app.request")

# Generated ids: a random per-process prefix and a counter, 32 hex characters. Unique across
# workers and instances like a uuid4, without a system call for randomness per request.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count()


# Set by core/observability/tracing.py while traces are exported: the request line then
# carries the trace id next to the request id, so a log line leads to its trace and back.
_trace_id_source: Callable[[], str | None] | None = None


def set_trace_id_source(source: Callable[[], str | None] | None) -> None:
    global _trace_id_source
    _trace_id_source = source


def _new_request_id() -> bytes:
    return f"{_ID_PREFIX}{next(_id_counter):016x}".encode()


# What every record has, and what formatting adds to it (another handler may have formatted
# it first): none of it is an extra field.
_STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; every text in it has its addresses masked
    (core/observability/masking.py)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_addresses(record.getMessage()),
        }
        entry.update(
            {
                key: _masked(value)
                for key, value in vars(record).items()
                if key not in _STANDARD_RECORD_FIELDS
            }
        )
        if record.exc_info:
            entry["exception"] = mask_addresses(self.formatException(record.exc_info))
        # Masked before encoding: JSON escapes non-ASCII, which would hide an address from it.
        return json.dumps(entry, default=lambda value: mask_addresses(str(value)))


def _masked(value: Any) -> Any:
    """`value` with the addresses in every text inside it masked (extra fields may be dicts,
    such as a job's arguments)."""
    if isinstance(value, str):
        return mask_addresses(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


class TextFormatter(logging.Formatter):
    """Readable lines for development, addresses masked like the JSON ones."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_addresses(super().format(record))


class _AppHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed."""


def log_formatter(json_lines: bool) -> logging.Formatter:
    if json_lines:
        return JsonFormatter()
    return TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def configure_logging(level: str, json_lines: bool) -> None:
    handler = _AppHandler(sys.stdout)
    handler.setFormatter(log_formatter(json_lines))
    root = logging.getLogger()
    # Replace only our own handler (create_app may run more than once per process); leave
    # handlers others installed, such as a test runner's log capture.
    root.handlers = [h for h in root.handlers if not isinstance(h, _AppHandler)] + [handler]
    root.setLevel(level.upper())


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = b""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                request_id = value if _SAFE_REQUEST_ID.match(value) else b""
                break
        if not request_id and scope["path"] in PROBE_PATHS:
            # A probe that sent no id gets none: nothing is logged, so there is nothing to
            # correlate, and probes are the most frequent requests of all.
            await self.app(scope, receive, send)
            return
        request_id = request_id or _new_request_id()
        started = time.perf_counter()
        finished: float | None = None
        status = 500  # what the client gets if the app dies before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id)]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # The client's wait ends here; background tasks (mail) run after it and must
                # not show in the duration, or it would tell known addresses from unknown.
                finished = time.perf_counter()

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] not in PROBE_PATHS:
                client = scope.get("client")
                fields = {
                    "request_id": request_id.decode(),
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(((finished or time.perf_counter()) - started) * 1000, 2),
                    "client": client[0] if client else None,
                }
                # The message says what a reader needs, the ids included: development's readable
                # lines show only the message; production's JSON lines carry the fields too.
                ids = f"request_id={fields['request_id']}"
                if _trace_id_source is not None:
                    fields["trace_id"] = _trace_id_source()
                    if fields["trace_id"]:
                        ids += f" trace_id={fields['trace_id']}"
                request_logger.info(
                    "%s %s %s %.1f ms %s",
                    scope["method"],
                    scope["path"],
                    status,
                    fields["duration_ms"],
                    ids,
                    extra=fields,
                )
