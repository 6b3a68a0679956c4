"""A worker's requests in progress: at most a fixed number at once, the rest waiting their
turn in arrival order, and a request that waits for slow work off the event loop handing its
place on meanwhile.

Its own module, below everything that waits (the database's thread hop, bcrypt) and the HTTP
edge that installs the middleware, so both can use it without importing each other.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send


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
