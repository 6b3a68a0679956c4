"""ASGI middleware that must see the raw request before FastAPI parses it."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    """413 for a body over `max_bytes`, decided before the body is read into memory.

    A declared Content-Length is checked up front; a chunked body is counted as it streams
    and cut off as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    status = 413 if declared > self.max_bytes else 400
                    await _send_error(
                        send,
                        status,
                        "Request body too large" if status == 413 else "Invalid Content-Length",
                    )
                    return

        received = 0
        response_started = False
        rejected = False

        async def counting_receive() -> Message:
            nonlocal received, rejected, response_started
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now, then tell the app the client is gone: frameworks turn an
                    # exception raised while reading the body into their own 400.
                    rejected = True
                    if not response_started:
                        response_started = True
                        await _send_error(send, 413, "Request body too large")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if rejected:
                return  # the 413 has been sent; whatever the app says now goes nowhere
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not rejected:
                raise


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Place:
    """A request's place among the ones in progress: held, or handed on while it waits;
    closed once the request is over (a task it left behind cannot take or give one)."""

    def __init__(self, places: asyncio.Semaphore) -> None:
        self.places = places
        self.held = False
        self.closed = False


_current_place: ContextVar[_Place | None] = ContextVar("current_place", default=None)


class ConcurrencyLimitMiddleware:
    """At most `limit` requests of this worker in progress at once; the others wait their turn
    in arrival order.

    Every request of a worker shares one event loop. Without a bound, a worker flooded with
    256 connections interleaves every request with every other and some wait far longer than
    the rest: over 3 s for GET /users/me at 256 connections (`make bench`), against none with
    a bound of 40, the size of the thread pool that makes a plain FastAPI app fair. `exempt`
    paths (probes, scrapes) never wait: they must answer while the worker is saturated.
    """

    def __init__(self, app: ASGIApp, limit: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.exempt = exempt
        self._places = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        place = _Place(self._places)
        await self._places.acquire()
        place.held = True
        token = _current_place.set(place)
        try:
            await self.app(scope, receive, send)
        finally:
            _current_place.reset(token)
            place.closed = True
            if place.held:
                place.held = False
                self._places.release()


@asynccontextmanager
async def place_handed_on() -> AsyncIterator[None]:
    """While the current request waits for slow work that takes no time on the event loop
    (bcrypt on its own threads), its place goes to the next request in line; it queues again
    for one afterwards. Outside ConcurrencyLimitMiddleware this does nothing."""
    place = _current_place.get()
    if place is None or not place.held or place.closed:
        yield
        return
    place.places.release()
    place.held = False
    try:
        yield
    finally:
        if not place.closed:
            await place.places.acquire()
            if place.closed:  # the request ended while this queued: give the place back
                place.places.release()
            else:
                place.held = True
