"""ConcurrencyLimitMiddleware: a bounded number of requests in progress per worker, the rest
admitted in arrival order; probes never wait; a request waiting for bcrypt hands its place on.
Driven at the ASGI level with requests that wait on events the test controls."""

import asyncio
import threading
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from core.concurrency import ConcurrencyLimitMiddleware, place_handed_on
from core.security import PasswordHasher


def scope(path: str) -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": []}


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(_message: Message) -> None:
    return None


class Gate:
    """An app whose requests record when they start and wait until the test lets them go."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.inside = 0
        self.most_inside = 0
        self.release: dict[str, asyncio.Event] = {}

    async def __call__(self, scope: Scope, _receive: Receive, _send: Send) -> None:
        name = scope["path"]
        self.started.append(name)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await self.release.setdefault(name, asyncio.Event()).wait()
        finally:
            self.inside -= 1

    def let_go(self, name: str) -> None:
        self.release.setdefault(name, asyncio.Event()).set()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_at_most_limit_requests_are_in_progress_and_the_rest_enter_in_arrival_order() -> None:
    async def scenario() -> None:
        gate = Gate()
        limited = ConcurrencyLimitMiddleware(gate, limit=2)
        names = [f"/r{n}" for n in range(6)]
        tasks = []
        for name in names:
            tasks.append(asyncio.create_task(limited(scope(name), receive, send)))
            await settle()  # arrivals one after another
        assert gate.started == names[:2]
        for name in names:
            gate.let_go(name)
            await settle()
        await asyncio.gather(*tasks)
        assert gate.started == names
        assert gate.most_inside == 2

    run(scenario)


def test_probes_never_wait_for_a_place() -> None:
    async def scenario() -> None:
        gate = Gate()
        limited = ConcurrencyLimitMiddleware(gate, limit=1, exempt=frozenset({"/health"}))
        busy = asyncio.create_task(limited(scope("/busy"), receive, send))
        await settle()
        probe = asyncio.create_task(limited(scope("/health"), receive, send))
        await settle()
        assert gate.started == ["/busy", "/health"]
        gate.let_go("/health")
        await asyncio.wait_for(probe, 1)
        gate.let_go("/busy")
        await busy

    run(scenario)


def test_a_request_waiting_for_bcrypt_hands_its_place_to_the_next_in_line() -> None:
    hasher = PasswordHasher(rounds=4, concurrency=1)
    order: list[str] = []
    # The hasher's only thread is kept busy until the read has run, so the login's hash cannot
    # finish first however the machine schedules threads. Were the place held through the
    # hash, the read could never run and the scenario would time out.
    hashing_thread_free = threading.Event()
    hasher._executor.submit(hashing_thread_free.wait, 10)

    async def app(scope: Scope, _receive: Receive, _send: Send) -> None:
        if scope["path"] == "/login":
            order.append("login starts hashing")
            await hasher.verify_async("some-password", None)
            order.append("login hashed")
        else:
            order.append("read")
            hashing_thread_free.set()

    async def scenario() -> None:
        limited = ConcurrencyLimitMiddleware(app, limit=1)
        login = asyncio.create_task(limited(scope("/login"), receive, send))
        await settle()
        read = asyncio.create_task(limited(scope("/read"), receive, send))
        await asyncio.wait_for(asyncio.gather(login, read), 5)

    try:
        run(scenario)
    finally:
        hashing_thread_free.set()
        hasher.shutdown()
    assert order == ["login starts hashing", "read", "login hashed"]


def test_a_request_cancelled_while_queueing_again_gives_back_no_place_it_does_not_hold() -> None:
    async def scenario() -> None:
        gate = Gate()
        resume_first = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] == "/first":
                async with place_handed_on():
                    await resume_first.wait()
            await gate(scope, receive, send)

        limited = ConcurrencyLimitMiddleware(app, limit=1)
        places = limited._places
        first = asyncio.create_task(limited(scope("/first"), receive, send))
        await settle()  # /first holds the place, hands it on, waits
        other = asyncio.create_task(limited(scope("/other"), receive, send))
        await settle()
        assert gate.started == ["/other"]  # /other has the place now
        resume_first.set()
        await settle()  # /first queues to get its place back
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        gate.let_go("/other")
        await other
        # Exactly the one place there was: nothing was given back twice.
        assert places._value == 1

    run(scenario)


def test_a_task_that_outlives_its_request_neither_frees_nor_keeps_a_place() -> None:
    """A task started inside a request inherits its place through the context; once the
    request is over, that task can neither give the place back a second time nor keep one."""

    async def scenario() -> None:
        leftover: list[asyncio.Task[None]] = []
        resume_leftover = asyncio.Event()
        free_while_handing_on: list[int] = []

        async def outlives_the_request() -> None:
            await resume_leftover.wait()
            async with place_handed_on():
                free_while_handing_on.append(limited._places._value)

        async def app(_scope: Scope, _receive: Receive, _send: Send) -> None:
            leftover.append(asyncio.create_task(outlives_the_request()))

        limited = ConcurrencyLimitMiddleware(app, limit=1)
        await limited(scope("/starts-a-task"), receive, send)
        assert limited._places._value == 1  # the request is over: its place is free
        resume_leftover.set()
        await asyncio.gather(*leftover)
        # Not 2: the place was not released a second time (two requests would get in).
        assert free_while_handing_on == [1]
        assert limited._places._value == 1

    run(scenario)


def test_a_task_still_queueing_for_its_place_when_the_request_ends_gives_it_back() -> None:
    """The leftover task handed the request's place on and queues to take it back; the
    request ends meanwhile. Once the task gets a place it must give it straight back."""

    async def scenario() -> None:
        gate = Gate()
        leftover: list[asyncio.Task[None]] = []
        handed_on, other_is_in, request_may_end = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def hands_on_the_place() -> None:
            async with place_handed_on():
                handed_on.set()
                await other_is_in.wait()
            # Leaving the block, it queues for a place again: /other holds the only one.

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] == "/starts-a-task":
                leftover.append(asyncio.create_task(hands_on_the_place()))
                await request_may_end.wait()
                return
            await gate(scope, receive, send)

        limited = ConcurrencyLimitMiddleware(app, limit=1)
        starter = asyncio.create_task(limited(scope("/starts-a-task"), receive, send))
        await handed_on.wait()
        other = asyncio.create_task(limited(scope("/other"), receive, send))
        await settle()
        assert gate.started == ["/other"]  # it took the place the task handed on
        other_is_in.set()
        await settle()  # the task queues behind /other
        request_may_end.set()
        await starter  # the request ends while its task still queues
        gate.let_go("/other")
        await other
        await asyncio.gather(*leftover)
        assert limited._places._value == 1  # the place came back: nothing holds it

    run(scenario)
