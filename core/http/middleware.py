"""ASGI middleware that must see the raw request before FastAPI parses it."""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.data import audit


class RequestOriginMiddleware:
    """Where the request comes from, for the audit log: the client's address (read as
    core/http/deps.get_client_ip reads it: behind a proxy, the server's forwarded-allow-ips
    makes it the client's) and its User-Agent, set once for everything the request runs
    (core/data/audit.py, `request_origin`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        user_agent = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                # Only the stored length is kept: a header may be as long as the server lets
                # it be. Normalized when an event is recorded, if one is.
                user_agent = value[: audit.USER_AGENT_MAX_LENGTH].decode("latin-1")
                break
        # Set and reset here, not in a context manager: its generator would cost more than
        # the rest of this middleware, on every request.
        token = audit.request_origin.set(audit.Origin(client[0] if client else None, user_agent))
        try:
            await self.app(scope, receive, send)
        finally:
            audit.request_origin.reset(token)


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
