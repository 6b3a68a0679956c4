"""Headers that keep a browser from turning a response into something else: from framing it,
sniffing it into another type, naming it in a Referer, or running anything in it that the
response did not allow.

Every response gets them, API JSON included: `nosniff` stops a browser from reading JSON that
echoes a client's strings as HTML or script, and the rest cost a JSON response nothing while
covering an error page or a file a feature may one day serve. A response that sets its own
Content-Security-Policy keeps it (the docs pages, core/http/docs.py, allow their bundled assets);
any other gets `default-src 'none'`: nothing loads in it and nothing frames it.

The headers are built once; per response this only appends them, after one pass over the
response's own few headers.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = b"content-security-policy"
DEFAULT_CONTENT_SECURITY_POLICY = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'"
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    # frame-ancestors is the modern form; X-Frame-Options covers browsers that predate it.
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_WITH_DEFAULT_POLICY = (
    *SECURITY_HEADERS,
    (CONTENT_SECURITY_POLICY, DEFAULT_CONTENT_SECURITY_POLICY.encode()),
)


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS, and the default policy unless the response has its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                own_policy = any(name == CONTENT_SECURITY_POLICY for name, _ in headers)
                extra = SECURITY_HEADERS if own_policy else _WITH_DEFAULT_POLICY
                message["headers"] = [*headers, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
