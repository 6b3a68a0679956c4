"""HTTP caching: conditional GETs for every API read, and one-line response caching for routes.

Every successful JSON answer to a GET under the API prefix carries a strong `ETag` (a SHA-256 of
its body: the same on every worker and instance and across restarts), `Cache-Control: private,
no-cache` (a browser may keep it but must ask again; no shared cache may store it) and `Vary:
Authorization`. A request whose `If-None-Match` names the current tag gets `304 Not Modified`
with no body: the client keeps its copy and the transfer is a few headers.

`@cached(tags)` on a GET route serves its response from core/cache.py: keyed by the route, the
path and the parameters it was called with, and by the tags, which name what the response
shows (the owner's rows, the users table), so a response for one user is never served to
another. A write invalidates the tags in its unit of work (`invalidate_on_commit`); the next
read is a miss.
"""

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import TypeAdapter
from pydantic_settings import BaseSettings
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.cache import Cache, schema_fingerprint
from core.data.db import Database, reads_from_primary
from core.http.ratelimit import RateLimiter
from core.security import PasswordHasher

P = ParamSpec("P")
T = TypeVar("T")

CACHE_CONTROL = "private, no-cache"
JSON_MEDIA_TYPE = "application/json"
# For the `responses` of every GET route under the API prefix: what a conditional GET answers.
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the ETag sent in If-None-Match is still current"}
}


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison, which If-None-Match uses: `W/` is ignored."""
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


class ConditionalGetMiddleware:
    """ETag, Cache-Control and Vary on successful JSON GETs under `prefix`; 304 when the
    client already holds the current representation; `no-store` on their errors."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = ""
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        start: Message | None = None
        start_headers = MutableHeaders()
        chunks: list[bytes] = []

        async def buffered_send(message: Message) -> None:
            nonlocal start, start_headers
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message["headers"]))
                if message["status"] != 200 or not headers.get("content-type", "").startswith(
                    JSON_MEDIA_TYPE
                ):
                    if message["status"] >= 400 and "cache-control" not in headers:
                        # A browser may keep some errors (404, 405) heuristically: an
                        # error says nothing about what the next request will get.
                        headers["cache-control"] = "no-store"
                    await send({**message, "headers": headers.raw})
                    start = None
                    return
                start, start_headers = message, headers
                return
            if start is None:  # not a response this middleware changes
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._finish(start, start_headers, b"".join(chunks), if_none_match, send)

        await self.app(scope, receive, buffered_send)

    @staticmethod
    async def _finish(
        start: Message, headers: MutableHeaders, body: bytes, if_none_match: str, send: Send
    ) -> None:
        etag = headers.get("etag") or etag_of(body)
        headers["etag"] = etag
        headers["cache-control"] = CACHE_CONTROL
        vary = headers.get("vary")
        if not vary or "authorization" not in vary.lower():
            headers["vary"] = f"{vary}, Authorization" if vary else "Authorization"
        if if_none_match and _matches(if_none_match, etag):
            for name in ("content-length", "content-type"):
                if name in headers:
                    del headers[name]
            await send({"type": "http.response.start", "status": 304, "headers": headers.raw})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({**start, "headers": headers.raw})
        await send({"type": "http.response.body", "body": body})


# --- one-line response caching -----------------------------------------------------------------


def cached(
    tags: Callable[..., Iterable[str]], *, ttl: float | None = None
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Cache a GET route's JSON response under `tags(...)`.

    `tags` is called with the route's own parameters, by name (`lambda user: [...]`): tag a
    response with whatever its content depends on, the owner included, and invalidate the
    same tags from the service's writes. The key is the route, the shape of its answer, its
    path, every parameter it is called with as validated (a query parameter the route does not
    declare makes no new entry), bar the machinery (database, cache, settings...), and the
    tags, so a response for one owner is never served to another. The response model is the
    route's return annotation. `ttl` defaults to CACHE_TTL_SECONDS. A miss that will be stored
    reads from the primary even in `@read_only` work: a replica's lag would otherwise be stored
    as current.
    """

    def decorate(endpoint: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        signature = inspect.signature(endpoint)
        body_type = TypeAdapter(signature.return_annotation)
        tag_parameters = list(inspect.signature(tags).parameters)
        name = f"{endpoint.__module__}.{endpoint.__qualname__}"
        shape = schema_fingerprint(signature.return_annotation)

        @wraps(endpoint)
        async def serve(*args: Any, **kwargs: Any) -> Any:
            request: Request = kwargs.pop("_cache_request")
            cache: Cache = request.app.state.cache
            entry_tags = tuple(tags(**{key: kwargs[key] for key in tag_parameters}))
            parameters = sorted(
                (key, _key_part(key, value))
                for key, value in kwargs.items()
                if not isinstance(value, _MACHINERY)
            )
            described = json.dumps(
                [name, shape, request.url.path, parameters, entry_tags], default=str
            )
            key = "response:" + hashlib.sha256(described.encode()).hexdigest()
            lookup = await cache.get(key, entry_tags)
            if isinstance(lookup.value, dict):
                return _json_response(lookup.value["body"].encode(), lookup.value["etag"])

            async def render() -> dict[str, str]:
                if lookup.versions is None:  # nothing will be stored: the usual read
                    result = await endpoint(*args, **kwargs)
                else:
                    with reads_from_primary():
                        result = await endpoint(*args, **kwargs)
                body = body_type.dump_json(body_type.validate_python(result, from_attributes=True))
                return {"body": body.decode(), "etag": etag_of(body)}

            entry_ttl = request.app.state.settings.CACHE_TTL_SECONDS if ttl is None else ttl
            rendered = await cache.single_flight(lookup, render, entry_ttl)
            return _json_response(rendered["body"].encode(), rendered["etag"])

        # FastAPI reads the route's parameters from the signature: add the request, so the
        # wrapper sees the path, and keep everything else as declared.
        serve.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[
                *signature.parameters.values(),
                inspect.Parameter(
                    "_cache_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request
                ),
            ]
        )
        return serve

    return decorate


# What a route is handed to do its work, not what its answer depends on. Every other
# parameter (path, query, the current user, a feature's own dependency) is part of the key.
_MACHINERY: tuple[type, ...] = (Request, Database, Cache, BaseSettings, PasswordHasher, RateLimiter)


def _key_part(name: str, value: Any) -> Any:
    try:
        return jsonable_encoder(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"@cached cannot key a response on parameter {name!r}") from error


def _json_response(body: bytes, etag: str) -> Response:
    return Response(content=body, media_type=JSON_MEDIA_TYPE, headers={"etag": etag})
