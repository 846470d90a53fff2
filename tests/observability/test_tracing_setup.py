"""Tracing is configured from the OTel environment only: off (no provider) without it;
and the Temporal interceptor replays workflows (sandboxed) without new spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.names import chat_workflow_id
from infra.tracing import requested_exporters
from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.workflows.test_replay import ALL_WORKFLOWS, HISTORIES
from workflows.chat_session import ChatSessionWorkflow

_ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json
from opentelemetry import trace
from infra.tracing import configure_tracing, tracing_enabled
from api.main import create_app
from infra.settings import Settings
configured = configure_tracing(service_name="keel-api")
app = create_app(Settings())
provider = trace.get_tracer_provider()
resource = getattr(provider, "resource", None)
print(json.dumps({
    "configured": configured,
    "enabled": tracing_enabled(),
    "provider": type(provider).__name__,
    "service": resource.attributes.get("service.name") if resource else None,
    "env": resource.attributes.get("deployment.environment") if resource else None,
    "sampler": type(getattr(provider, "sampler", None)).__name__,
    "instrumented": bool(getattr(app, "_is_instrumented_by_opentelemetry", False)),
}))
"""


def _probe(**otel: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KEEL_"))}
    env.update(otel, PYTHONPATH=str(_ROOT))
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_without_otel_variables_no_provider_is_installed() -> None:
    seen = _probe()
    assert seen["configured"] is False and seen["enabled"] is False
    assert seen["provider"] == "ProxyTracerProvider"  # OpenTelemetry's default: no-op tracers
    assert seen["instrumented"] is False


def test_otel_variables_install_the_provider() -> None:
    seen = _probe(OTEL_TRACES_EXPORTER="console", OTEL_RESOURCE_ATTRIBUTES="deployment.environment=prod")
    assert seen["configured"] is True and seen["enabled"] is True and seen["instrumented"] is True
    assert seen["provider"] == "TracerProvider"
    assert seen["service"] == "keel-api" and seen["env"] == "prod"
    named = _probe(
        OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="keel-eu", OTEL_TRACES_SAMPLER="always_off"
    )
    assert named["service"] == "keel-eu" and named["sampler"] == "StaticSampler"
    assert _probe(OTEL_TRACES_EXPORTER="none")["provider"] == "ProxyTracerProvider"
    otlp = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")  # the endpoint alone: OTLP/HTTP
    assert otlp["configured"] is True and otlp["provider"] == "TracerProvider"


def test_which_exporters() -> None:
    assert requested_exporters({}) == []
    assert requested_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert requested_exporters({"OTEL_TRACES_EXPORTER": "otlp,console"}) == ["otlp", "console"]
    assert (
        requested_exporters({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}) == []
    )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_committed_histories_replay_with_the_interceptor(
    path: Path, spans: InMemorySpanExporter
) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(  # the default (sandboxed) runner, as the ingest and audit workers use
        workflows=ALL_WORKFLOWS,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor(always_create_workflow_spans=True)],
    )
    await replayer.replay_workflow(history)
    assert spans.get_finished_spans() == ()  # a replay creates no workflow spans


async def test_a_traced_history_replays_sandboxed(
    traced: RunningApi, spans: InMemorySpanExporter, llm: FakeOpenAI, temporal_client: Client
) -> None:
    headers = await traced.auth("otel-replay")
    llm.enqueue(Reply("traced answer"))
    body = (await traced.http.post("/api/v1/chat", json={"message": "replay me"}, headers=headers)).json()
    assert body["status"] == "completed", body
    history = await temporal_client.get_workflow_handle(chat_workflow_id(body["session_id"])).fetch_history()
    assert any(
        "_tracer-data" in e.workflow_execution_started_event_attributes.header.fields
        for e in history.events[:1]
    )
    spans.clear()
    for interceptors in ([TracingInterceptor(always_create_workflow_spans=True)], []):
        replayer = Replayer(
            workflows=[ChatSessionWorkflow], data_converter=pydantic_data_converter, interceptors=interceptors
        )
        await replayer.replay_workflow(history)
    assert spans.get_finished_spans() == ()
