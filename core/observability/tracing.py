"""OpenTelemetry traces, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Without that setting nothing here is imported and no request pays for tracing: the SDK, the
exporter and the instrumentations load only when traces are wanted.

With it, every request is a span, with its SQL statements (SQLAlchemy) and Redis commands
(rate limits) as child spans:
- HTTP: FastAPI's own OpenTelemetry support, which starts a server span per request (named
  after the route template, continuing a caller's `traceparent`) as soon as a tracer provider
  is configured;
- SQLAlchemy and Redis: the OpenTelemetry instrumentations.
The standard OTEL_* variables keep their meaning (OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_SCHEDULE_DELAY, ...). Probes and scrapes (/health,
/health/ready, /metrics) are never traced: they are most of the requests and none of the
questions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.config import Settings
from core.observability import logging as app_logging

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy import Engine

logger = logging.getLogger("app.tracing")

# One provider per process: OpenTelemetry's global provider can be set only once.
_provider: TracerProvider | None = None


def traces_endpoint(base: str) -> str:
    """OTLP/HTTP sends traces to `<base>/v1/traces`, as the OpenTelemetry SDKs do."""
    return f"{base.rstrip('/')}/v1/traces"


def install(settings: Settings, engines: Sequence[Engine]) -> None:
    if not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return
    provider = _tracer_provider(settings)
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # skip_dep_check: the package declares SQLAlchemy < 2.1, but the engine events it
        # uses are unchanged in 2.1 (tests/deploy/test_observability.py checks the spans).
        instrumentor.instrument(
            engines=list(engines), tracer_provider=provider, skip_dep_check=True
        )
    if settings.REDIS_URL:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        redis_instrumentor = RedisInstrumentor()
        if not redis_instrumentor.is_instrumented_by_opentelemetry:
            redis_instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    app_logging.set_trace_id_source(current_trace_id)


def _tracer_provider(settings: Settings) -> TracerProvider:
    global _provider
    if _provider is not None:
        return _provider
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The sampler the OTEL_TRACES_SAMPLER variables ask for (parent-based, always on, by
    # default), as a provider built without one picks it; probes are dropped in front of it.
    configured_sampler = TracerProvider(shutdown_on_exit=False).sampler
    provider = TracerProvider(
        sampler=_without_probes(configured_sampler),
        resource=Resource.create({SERVICE_NAME: settings.OTEL_SERVICE_NAME}),
    )
    # A background thread per worker sends spans in batches; the provider flushes what is
    # left when the process exits (SIGTERM included).
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=traces_endpoint(settings.OTEL_EXPORTER_OTLP_ENDPOINT))
        )
    )
    trace.set_tracer_provider(provider)
    _provider = provider
    logger.info("traces exported to %s", settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    return provider


def _without_probes(delegate: Any) -> Any:
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class WithoutProbes(Sampler):
        """Drops the server spans of probes and scrapes; their children follow their parent."""

        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if attributes and attributes.get("url.path") in app_logging.PROBE_PATHS:
                return SamplingResult(Decision.DROP)
            result: SamplingResult = delegate.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
            return result

        def get_description(self) -> str:
            return f"WithoutProbes{{{delegate.get_description()}}}"

    return WithoutProbes()


def current_trace_id() -> str | None:
    """The id of the trace the running code belongs to, as 32 hex digits, if it is sampled."""
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return format(context.trace_id, "032x")
