"""OpenTelemetry tracing of one process, configured from the standard OTel environment only.

Off unless ``OTEL_TRACES_EXPORTER`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: then no
provider is installed, the API's tracer is OpenTelemetry's no-op one and nothing is
exported. On, :func:`configure_tracing` (called once per process by ``keel api|dev|
worker|slack``) installs an SDK ``TracerProvider`` with

- the resource of ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (service name
  ``keel-<command>`` when neither names one),
- the sampler of ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (the SDK reads them),
- one exporter per name in ``OTEL_TRACES_EXPORTER`` (``otlp``: OTLP over HTTP/protobuf,
  the default when only the endpoint is set; ``console``; ``none``), behind a batch processor.

Everything else asks :func:`tracing_enabled` (is an SDK provider installed?), so a test
installs its own provider (:func:`install_tracer_provider`, e.g. with an in-memory
exporter) and the whole process traces. Keel's user and session ids travel as W3C baggage
(``keel.user_id``, ``keel.session_id``) through Temporal headers; :class:`KeelBaggageAttributes`
writes them on every span started under them (docs/observability.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import structlog
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = structlog.get_logger(__name__)

#: The GenAI conventions' flag for message contents, tool arguments and results, query texts.
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
USER_ID = "keel.user_id"
SESSION_ID = "keel.session_id"
TURN_ID = "keel.turn_id"
_BAGGAGE_KEYS = (USER_ID, SESSION_ID)


def requested_exporters(env: Mapping[str, str] | None = None) -> list[str]:
    """The exporters the environment asks for; empty when tracing is off."""
    env = os.environ if env is None else env
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        return ["otlp"] if env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() else []
    return [n for n in names if n != "none"]


def configure_tracing(*, service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install this process's tracer provider when the environment turns tracing on;
    returns whether it did. Call once per process, before any Temporal client or app."""
    exporters = requested_exporters(env)
    if not exporters:
        return False
    provider = new_tracer_provider(service_name=service_name)
    for name in exporters:
        exporter = _exporter(name, env=os.environ if env is None else env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    install_tracer_provider(provider)
    log.info(
        "tracing.configured", exporters=exporters, service=provider.resource.attributes.get("service.name")
    )
    return True


def new_tracer_provider(*, service_name: str) -> TracerProvider:
    """A provider with Keel's resource and baggage processor, and no exporter yet."""
    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER(_ARG)
    provider.add_span_processor(KeelBaggageAttributes())
    return provider


def install_tracer_provider(provider: TracerProvider) -> None:
    """Make ``provider`` the process's (OpenTelemetry allows this once per process)."""
    trace.set_tracer_provider(provider)


def tracing_enabled() -> bool:
    """Whether an SDK provider is installed (the API's default is a no-op proxy)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def capture_content() -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``: spans carry message
    contents, tool arguments and results, and query texts (off by default: they are personal data)."""
    return os.environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the recording span in the current context, else None."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid or not trace.get_current_span().is_recording():
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def current_trace_id() -> str | None:
    ids = current_ids()
    return None if ids is None else ids[0]


def bind_turn(*, user_id: str, session_id: str | None = None, turn_id: str | None = None) -> None:
    """Name the user (and session, turn) on the current span, and carry user and session
    as baggage for the rest of this task, into the workflows it starts and their activities."""
    if not tracing_enabled():
        return
    span = trace.get_current_span()
    span.set_attribute("enduser.id", user_id)
    span.set_attribute(USER_ID, user_id)
    ctx = baggage.set_baggage(USER_ID, user_id)
    if session_id:
        span.set_attribute(SESSION_ID, session_id)
        ctx = baggage.set_baggage(SESSION_ID, session_id, ctx)
    if turn_id:
        span.set_attribute(TURN_ID, turn_id)
    context.attach(ctx)  # detached with the task's context (a request, an activity)


class KeelBaggageAttributes(SpanProcessor):
    """Writes ``keel.user_id`` / ``keel.session_id`` baggage on each span started under it."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        for key in _BAGGAGE_KEYS:
            value = baggage.get_baggage(key, parent_context)
            if value is not None:
                span.set_attribute(key, str(value))

    def on_end(self, span: ReadableSpan) -> None:
        return None


def _exporter(name: str, *, env: Mapping[str, str]) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol != "http/protobuf":
            log.warning("tracing.otlp_protocol_unsupported", protocol=protocol, used="http/protobuf")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_(TRACES_)*
    log.warning("tracing.unknown_exporter", exporter=name)
    return None
