"""The one Temporal client factory (API, Slack, workers, tests): pydantic data converter, and
with tracing on (infra.tracing) the OpenTelemetry interceptor, which workers built from the
client inherit: a request's trace continues into the workflow and its activities."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from core.names import ingest_workflow_id
from infra.settings import Settings
from infra.tracing import tracing_enabled


async def connect_temporal(settings: Settings, *, address: str | None = None) -> Client:
    # Workflow spans also when no client span started the workflow (a schedule, the CLI).
    tracing = [TracingInterceptor(always_create_workflow_spans=True)] if tracing_enabled() else []
    return await Client.connect(
        address or settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=tracing,
    )


async def stop_superseded_ingestion(client: Client, document_id: str, version: int) -> None:
    """A new version of a document is about to be ingested: terminate the older version's
    ingestion if it still runs (its activities would stop at their next write anyway: they
    check the version), so the new one can start under the same workflow id."""
    handle = client.get_workflow_handle(ingest_workflow_id(document_id))
    try:
        await handle.terminate(reason=f"superseded by version {version}")
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
