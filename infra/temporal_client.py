"""The one Temporal client factory (API, Slack, workers, tests): pydantic data converter,
TLS / Temporal Cloud API key, the SDK's own Prometheus metrics, and with tracing on
(infra.tracing) the OpenTelemetry interceptor, which workers built from the client
inherit: a request's trace continues into the workflow and its activities."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from core.names import ingest_workflow_id
from infra.settings import Settings
from infra.tracing import tracing_enabled

#: One Runtime per process (it owns the SDK's metrics exporter and its port).
_runtimes: dict[str, Runtime] = {}


def sdk_runtime(settings: Settings) -> Runtime | None:
    """With ``KEEL_TEMPORAL_METRICS_PORT``, a Runtime whose Prometheus exporter serves the
    SDK's metrics (``temporal_*``: task slots, schedule-to-start latency, poll and request
    failures) on that port; the first call binds it and later calls reuse it."""
    if settings.temporal_metrics_port is None:
        return None
    bind = f"{settings.worker_health_host}:{settings.temporal_metrics_port}"
    if bind not in _runtimes:
        _runtimes[bind] = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=bind, durations_as_seconds=True),
                global_tags={"service": "keel"},
            )
        )
    return _runtimes[bind]


def tls_config(settings: Settings) -> TLSConfig | bool:
    """``False`` (plain gRPC, the dev server) unless TLS is asked for: by KEEL_TEMPORAL_TLS,
    by a client certificate (mTLS) or by an API key (Temporal Cloud)."""
    wants = settings.temporal_tls or settings.temporal_api_key is not None
    if not wants and settings.temporal_tls_cert_path is None:
        return False
    cert, key, ca = (
        settings.temporal_tls_cert_path,
        settings.temporal_tls_key_path,
        settings.temporal_tls_ca_path,
    )
    return TLSConfig(
        client_cert=cert.read_bytes() if cert else None,
        client_private_key=key.read_bytes() if key else None,
        server_root_ca_cert=ca.read_bytes() if ca else None,
    )


async def connect_temporal(settings: Settings, *, address: str | None = None) -> Client:
    api_key = settings.temporal_api_key
    # Workflow spans also when no client span started the workflow (a schedule, the CLI).
    tracing = [TracingInterceptor(always_create_workflow_spans=True)] if tracing_enabled() else []
    return await Client.connect(
        address or settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls_config(settings),
        api_key=api_key.get_secret_value() if api_key else None,
        runtime=sdk_runtime(settings),
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
