"""Retrieval and tool spans and metrics, through the real stack: an ingested document is
searched by a chat turn and by a direct query; a real MCP server (streamable HTTP) runs a tool
the model asks for, and the audit row the activity writes carries the turn's trace id."""

from __future__ import annotations

import json

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from infra.settings import Settings
from tests.conftest import RunningApi
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.knowledge.test_documents_api import HANDBOOK, query, upload, wait_settled
from tests.observability.conftest import metric, named, one, trace_of


async def test_retrieval_spans_and_metrics(
    traced: RunningApi, spans: InMemorySpanExporter, llm: FakeOpenAI
) -> None:
    ready = metric("keel_documents_ingested_total", outcome="ready")
    searches = metric("keel_retrieval_duration_seconds_count", outcome="ok")
    results = metric("keel_retrieval_results_count")
    queries = metric("keel_knowledge_queries_total")
    headers = await traced.auth("otel-kb")
    kbs = (await traced.http.get("/api/v1/knowledge-bases", headers=headers)).json()["knowledge_bases"]
    kb_id = next(kb["id"] for kb in kbs if kb["personal"])
    doc_id = await upload(traced, headers, kb_id, "handbook.txt", HANDBOOK.encode())
    assert (await wait_settled(traced, headers, kb_id, doc_id))["status"] == "ready"
    assert metric("keel_documents_ingested_total", outcome="ready") == ready + 1
    assert one(spans, "RunWorkflow:IngestDocumentWorkflow")  # the sandboxed ingest worker traces too

    spans.clear()
    body = (
        await traced.http.post(
            "/api/v1/chat", json={"message": "how do I reset my password?"}, headers=headers
        )
    ).json()
    assert body["status"] == "completed" and body["message"]["citations"], body
    search = one(spans, "retrieval keel-knowledge")
    attrs = dict(search.attributes or {})
    assert search.kind == SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "retrieval"
    assert attrs["gen_ai.data_source.id"] == "keel-knowledge"
    assert attrs["keel.retrieval.result_count"] == len(body["message"]["citations"])
    assert attrs["keel.user_id"] == "otel-kb" and attrs["keel.session_id"] == body["session_id"]
    assert attrs["keel.turn_id"] == body["turn_id"]
    assert "gen_ai.retrieval.query.text" not in attrs  # content flag off
    assert trace_of(search) == trace_of(one(spans, "POST /api/v1/chat"))
    assert metric("keel_retrieval_duration_seconds_count", outcome="ok") == searches + 1
    assert metric("keel_retrieval_results_count") == results + 1

    spans.clear()
    hits = await query(traced, headers, kb_id, "password reset")
    assert hits
    direct = one(spans, "retrieval keel-knowledge")
    assert (direct.attributes or {})["keel.retrieval.result_count"] == len(hits)
    assert (direct.attributes or {})["keel.user_id"] == "otel-kb"  # baggage from the request
    assert (direct.attributes or {})["keel.knowledge_base_ids"] == (kb_id,)
    assert trace_of(direct) == trace_of(one(spans, "POST /api/v1/knowledge-bases/{kb_id}/query"))
    assert metric("keel_knowledge_queries_total") == queries + 1


@pytest.mark.usefixtures("empty_allowlist")
async def test_tool_span_metrics_and_audit_trace_id(
    settings: Settings,
    traced: RunningApi,
    spans: InMemorySpanExporter,
    llm: FakeOpenAI,
    counter: CounterMcpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = {"Authorization": f"Bearer {await traced.token('otel-admin', roles=['OrgAdmin'])}"}
    resp = await traced.http.post(
        "/api/v1/admin/tools",
        json={"name": "counter", "transport": "http", "url": counter.url},
        headers=admin,
        timeout=90,
    )
    assert resp.status_code == 201, resp.text
    server_id = resp.json()["id"]
    before = metric("keel_tool_calls_total", server="counter", tool="record_event", outcome="ok")
    durations = metric("keel_tool_call_duration_seconds_count", server="counter", tool="record_event")

    user = await traced.auth("otel-tools")
    llm.enqueue(
        ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "deploy"}))]), Reply("Done.")
    )
    spans.clear()
    body = (await traced.http.post("/api/v1/chat", json={"message": "record deploy"}, headers=user)).json()
    assert body["status"] == "completed", body
    [call] = body["tool_calls"]
    tool = one(spans, "execute_tool counter__record_event")
    attrs = dict(tool.attributes or {})
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["gen_ai.tool.name"] == "counter__record_event"
    assert attrs["gen_ai.tool.call.id"] == call["call_id"]
    assert attrs["keel.mcp.server_id"] == server_id
    assert attrs["keel.user_id"] == "otel-tools" and attrs["keel.turn_id"] == body["turn_id"]
    assert "gen_ai.tool.call.arguments" not in attrs and "gen_ai.tool.call.result" not in attrs
    trace_id = trace_of(one(spans, "POST /api/v1/chat"))
    assert trace_of(tool) == trace_id
    assert len(named(spans, "chat fake-model")) == 2  # the call, then the answer: one trace
    assert {trace_of(s) for s in named(spans, "chat fake-model")} == {trace_id}
    assert metric("keel_tool_calls_total", server="counter", tool="record_event", outcome="ok") == before + 1
    assert (
        metric("keel_tool_call_duration_seconds_count", server="counter", tool="record_event")
        == durations + 1
    )

    # The tool.invoked audit row is written in the worker's activity: the trace id is its span's.
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        row = await conn.fetchrow(
            "SELECT trace_id FROM audit_events WHERE event = 'tool.invoked' AND session_id = $1",
            body["session_id"],
        )
    finally:
        await conn.close()
    assert row is not None and row["trace_id"] == trace_id

    # With the content flag: arguments and result on the span.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    llm.enqueue(ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "again"}))]), Reply("Done."))
    spans.clear()
    body = (await traced.http.post("/api/v1/chat", json={"message": "record again"}, headers=user)).json()
    assert body["status"] == "completed", body
    attrs = dict(one(spans, "execute_tool counter__record_event").attributes or {})
    assert json.loads(str(attrs["gen_ai.tool.call.arguments"])) == {"name": "again"}
    assert attrs["gen_ai.tool.call.result"]
