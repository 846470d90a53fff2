"""Tracing on for these tests: an SDK provider with an in-memory exporter, installed once
per process (OpenTelemetry allows one), as ``configure_tracing`` installs the real one.

Installing it turns tracing on for the rest of the process: clients from
``connect_temporal`` carry the interceptor and apps from ``create_app`` get server spans.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from infra.settings import Settings
from infra.temporal_client import connect_temporal
from infra.tracing import CAPTURE_CONTENT, install_tracer_provider, new_tracer_provider
from tests.conftest import RunningApi, running_platform
from tests.tools.conftest import counter, empty_allowlist  # the tool tests' fixtures

__all__ = ["counter", "empty_allowlist"]


@pytest.fixture(scope="session")
def _exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = new_tracer_provider(service_name="keel-test")
        install_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The exporter, emptied; message contents off unless a test turns them on."""
    monkeypatch.delenv(CAPTURE_CONTENT, raising=False)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@pytest.fixture
async def traced(settings: Settings, spans: InMemorySpanExporter) -> AsyncIterator[RunningApi]:
    """API + in-process workers on a client from the one factory (so: traced); tool servers
    on loopback allowed (the test MCP server listens there)."""
    settings = settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})
    client = await connect_temporal(settings)
    async with running_platform(settings, client) as api:
        yield api


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, (name, sorted({s.name for s in spans.get_finished_spans()}))
    return found[0]


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
