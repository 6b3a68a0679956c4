"""Metrics and tracing, installed on the app in one call.

- `GET /metrics` in the Prometheus text format (OpenMetrics when asked), unless
  METRICS_ENABLED=false, which removes the route and the middleware altogether.
- HTTP metrics per route template: `/api/v1/users/{user_id}`, never the path a client sent,
  so random ids cannot multiply the series; paths no route matches share `<unmatched>`.
- Traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (core/observability/tracing.py).

/metrics is for Prometheus on the private network: the public load balancer refuses it
(deploy/nginx.conf). It is left out of the OpenAPI schema, the HTTP metrics and the request
log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import jobs
from core.config import Settings
from core.data.db import Database
from core.jobs import queue as job_queue
from core.observability import metrics, metrics_files, tracing

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics_core import Metric

logger = logging.getLogger("app.metrics")

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A scrape waits this long for the job queue's figures before leaving them out.
JOB_QUEUE_READ_TIMEOUT_SECONDS = 2.0


def install(app: FastAPI, settings: Settings) -> None:
    """Call once, after every router is included: the route table must be complete."""
    database: Database = app.state.database
    if settings.METRICS_ENABLED:
        metrics.enable()
        metrics.watch_pools(database.engines)
        # Added last, so it is the outermost of the app's middleware: 413s and 500s count.
        app.add_middleware(HttpMetricsMiddleware, app_routes=app.router.routes)
        app.add_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False)
        if settings.jobs_run_in_process:
            # Jobs run here: their series, as the worker's are (every job is declared by now).
            metrics.expect_jobs(jobs.declared_jobs())
        else:
            # The queue's depth and oldest waiting job, read from its table at each scrape,
            # through whatever database the app holds then.
            metrics.watch_job_queue(functools.partial(_job_queue_stats, app))
    else:
        metrics.disable()
    tracing.install(settings, database.engines)


async def _job_queue_stats(app: FastAPI) -> metrics.JobQueueStats:
    database: Database = app.state.database
    stats = await database.run(job_queue.stats)
    return metrics.JobQueueStats(stats.by_status, stats.oldest_waiting_seconds)


class HttpMetricsMiddleware:
    """Counts every response by method, route template and status, and times it."""

    def __init__(self, app: ASGIApp, app_routes: list[Any]) -> None:
        self.app = app
        self._routes = RouteTemplates(app_routes)
        # Label lookups take a lock in prometheus-client; a dict of the children already
        # made is cheaper. It stays small: routes, methods and statuses are finite.
        self._children: dict[tuple[int, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Routing into a mount rewrites root_path; matching the path again needs the original.
        root_path = scope.get("root_path", "")
        status = 500  # what the client gets if the app dies before answering
        recorded = False

        async def counting_send(message: Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
            elif (
                not recorded
                and message["type"] == "http.response.body"
                and not message.get("more_body")
            ):
                # Counted before the last byte leaves: a scrape that follows the response
                # always sees it.
                recorded = True
                self._record(scope, root_path, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if not recorded:
                self._record(scope, root_path, status, time.perf_counter() - started)

    def _record(self, scope: Scope, root_path: str, status: int, seconds: float) -> None:
        families = metrics.active()
        if families is None:
            return
        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = "OTHER"
        route = scope.get("route")
        # Per request this is one dict look-up: the route object the router chose stands for
        # its template. Requests no route claimed are looked up by path, and not kept here.
        key = (id(route), method, status)
        children = self._children.get(key) if route is not None else None
        if children is None:
            template = self._routes.template(scope, root_path, status)
            children = (
                families.http_requests.labels(method, template, str(status)),
                families.http_duration.labels(method, template),
            )
            if route is not None:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class RouteTemplates:
    """The route template of a request, such as `/api/v1/users/{user_id}`.

    The router leaves the route it chose in the scope, but FastAPI shares one route object
    between every place its router is included, so the object's own path lacks the prefix
    it was included with. The full template comes from FastAPI's route contexts, looked up
    by the chosen route; requests answered before routing (a 413) are matched here.
    """

    def __init__(self, app_routes: list[Any]) -> None:
        self._app_routes = app_routes
        self._by_route: dict[int, str | None] = {}
        self._contexts: list[Any] = []

    def template(self, scope: Scope, root_path: str, status: int) -> str:
        route = scope.get("route")
        if route is not None:
            if id(route) not in self._by_route:
                self._index()
                # Still unknown (not reachable from the app's routes): search from now on.
                self._by_route.setdefault(id(route), None)
            template = self._by_route[id(route)]
            if template is not None:
                return template
        elif status == 404:
            return UNMATCHED_ROUTE  # the router found nothing, no need to search again
        return self._search(scope, root_path)

    def _index(self) -> None:
        from fastapi.routing import iter_route_contexts

        self._contexts = list(iter_route_contexts(self._app_routes))
        templates: dict[int, set[str]] = {}
        for context in self._contexts:
            if context.path_format:
                templates.setdefault(id(context.original_route), set()).add(context.path_format)
        # A route included under two prefixes is ambiguous by itself: None sends its
        # requests to the search, which matches the path.
        self._by_route = {
            key: next(iter(found)) if len(found) == 1 else None for key, found in templates.items()
        }

    def _search(self, scope: Scope, root_path: str) -> str:
        if not self._contexts:
            self._index()
        # The request as it arrived, before routing added to the scope.
        arrived = {
            "type": "http",
            "path": scope["path"],
            "root_path": root_path,
            "method": scope["method"],
            "headers": scope["headers"],
        }
        partial = None
        for context in self._contexts:
            match, _ = context.matches(arrived)
            if match is Match.FULL and context.path_format:
                return str(context.path_format)
            if match is Match.PARTIAL and partial is None:
                partial = context.path_format
        return str(partial) if partial else UNMATCHED_ROUTE


# --- /metrics ----------------------------------------------------------------------------


async def metrics_endpoint(request: Request) -> Response:
    from prometheus_client.exposition import choose_encoder

    job_queue = await _read_job_queue()
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    scrape = Scrape(job_queue)
    # Reading the workers' files is blocking I/O: off the event loop.
    body = await run_in_threadpool(encode, scrape)
    return Response(body, media_type=None, headers={"Content-Type": content_type})


async def _read_job_queue() -> metrics.JobQueueStats | None:
    read = metrics.job_queue_reader()
    if read is None:
        return None
    try:
        return await asyncio.wait_for(read(), JOB_QUEUE_READ_TIMEOUT_SECONDS)
    except Exception as error:
        # The other figures are worth more than a failed scrape.
        logger.warning("job queue figures left out of /metrics: %s", type(error).__name__)
        return None


class Scrape:
    """Everything one scrape exports: every worker's samples, their process figures, and the
    job queue as read just now."""

    def __init__(self, job_queue: metrics.JobQueueStats | None) -> None:
        self._job_queue = job_queue

    def collect(self) -> Iterator[Metric]:
        from prometheus_client import ProcessCollector
        from prometheus_client.multiprocess import MultiProcessCollector

        directory = metrics.multiprocess_directory()
        if directory is None:
            registry = metrics.local_registry()
            if registry is not None:
                yield from registry.collect()
            yield from ProcessCollector(registry=None).collect()
        else:
            with metrics_files.locked(directory, exclusive=False):
                yield from MultiProcessCollector.merge(metrics_files.metric_files(directory))
                pids = metrics_files.live_worker_pids(directory)
            yield from worker_process_metrics(pids)
        if self._job_queue is not None:
            yield from job_queue_metrics(self._job_queue)


def worker_process_metrics(pids: Iterable[int]) -> Iterator[Metric]:
    """CPU, memory, file descriptors and start time of every live worker, labelled `pid`.

    prometheus-client's own process metrics describe only the process that answers, which
    under gunicorn is a different worker at each scrape; these are read from /proc for all
    of them (the workers share the answering worker's user and PID namespace).
    """
    from prometheus_client import ProcessCollector
    from prometheus_client.metrics_core import Metric

    merged: dict[str, Metric] = {}
    for pid in pids:
        for family in ProcessCollector(pid=functools.partial(int, pid), registry=None).collect():
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(
                    family.name, family.documentation, family.type
                )
            for sample in family.samples:
                target.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
    return iter(merged.values())


def job_queue_metrics(stats: metrics.JobQueueStats) -> Iterator[Metric]:
    from prometheus_client.metrics_core import GaugeMetricFamily

    depth = GaugeMetricFamily(
        "app_job_queue_depth", "Jobs in the queue, by status.", labels=["status"]
    )
    for status, count in sorted(stats.depth_by_status.items()):
        depth.add_metric([status], count)
    yield depth
    # 0 with nothing waiting, rather than no series: an alert on `> 300` stays simple.
    yield GaugeMetricFamily(
        "app_job_oldest_waiting_age_seconds",
        "Age of the oldest job waiting to run (0: none waiting).",
        value=stats.oldest_waiting_age_seconds or 0.0,
    )
