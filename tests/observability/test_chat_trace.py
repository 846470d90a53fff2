"""One chat turn through the real API, workflow and worker, traced: one trace from the HTTP
request to the model call, GenAI attributes with the fake model's usage, Keel's ids on
the spans, the trace id in the log lines and the audit row, and the call's metrics."""

from __future__ import annotations

import json
import logging
import uuid

import asyncpg
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client

from infra.logging import configure_logging
from infra.settings import Settings
from infra.tracing import CAPTURE_CONTENT
from tests.conftest import RunningApi, running_platform
from tests.fakes.openai_server import Error, FakeOpenAI, Reply
from tests.observability.conftest import metric, named, one, trace_of

MODEL = "fake-model"


async def test_a_turn_is_one_trace_with_genai_attributes_ids_logs_audit_and_metrics(
    traced: RunningApi,
    spans: InMemorySpanExporter,
    llm: FakeOpenAI,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {
        "llm_ok": metric("keel_llm_request_duration_seconds_count", model=MODEL, outcome="ok"),
        "ttft": metric("keel_llm_time_to_first_token_seconds_count", model=MODEL),
        "turns": metric("keel_turns_total", outcome="completed"),
        "sessions": metric("keel_sessions_started_total"),
        "retrievals": metric("keel_retrieval_duration_seconds_count", outcome="ok"),
    }
    headers = await traced.auth("otel-alice")
    llm.enqueue(Reply("one two three four"))
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(level="INFO", json=True)
    structlog.configure(cache_logger_on_first_use=False)  # later tests get their loggers back
    try:
        resp = await traced.http.post("/api/v1/chat", json={"message": "hello tracing"}, headers=headers)
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
        structlog.reset_defaults()
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "completed", body
    session_id, turn_id = body["session_id"], body["turn_id"]

    http = one(spans, "POST /api/v1/chat")
    chat = one(spans, f"chat {MODEL}")
    activity = one(spans, "RunActivity:call_llm")
    trace_id = trace_of(http)
    assert http.kind == SpanKind.SERVER
    linked = [
        http,
        one(spans, "StartUpdateWithStartWorkflow:ChatSessionWorkflow"),
        one(spans, "RunWorkflow:ChatSessionWorkflow"),
        one(spans, "HandleUpdate:send_message"),
        one(spans, "StartActivity:call_llm"),
        activity,
        chat,
    ]
    assert {trace_of(s) for s in linked} == {trace_id}
    assert chat.parent is not None and activity.context is not None
    assert chat.parent.span_id == activity.context.span_id

    attrs = dict(chat.attributes or {})
    assert chat.kind == SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.response.model"] == MODEL
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == body["usage"]["prompt_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] == body["usage"]["completion_tokens"] == 4  # four words
    assert isinstance(attrs["gen_ai.request.max_tokens"], int) and attrs["gen_ai.request.max_tokens"] > 0
    assert attrs["gen_ai.conversation.id"] == session_id
    assert attrs["server.address"] == "127.0.0.1"
    assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs  # flag off
    assert "error.type" not in attrs
    for span in (http, activity, chat):  # user and session: baggage from the request; turn: the call site
        assert (span.attributes or {})["keel.user_id"] == "otel-alice", span.name
        assert (span.attributes or {})["keel.session_id"] == session_id, span.name
    assert attrs["keel.turn_id"] == turn_id
    assert (http.attributes or {})["enduser.id"] == "otel-alice"
    # Whether the turn searched depends on what other tests left readable (org documents):
    # if it did, the search is in the same trace.
    assert all(trace_of(s) == trace_id for s in named(spans, "RunActivity:retrieve"))

    # The model call's log line (written in the worker's activity) carries the trace.
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [completed] = [e for e in lines if e.get("event") == "llm.call_completed" and e.get("turn_id") == turn_id]
    assert completed["trace_id"] == trace_id and len(completed["span_id"]) == 16

    conn = await asyncpg.connect(str(settings.database_url))
    try:
        row = await conn.fetchrow(
            "SELECT trace_id FROM audit_events WHERE event = 'session.started' AND session_id = $1",
            session_id,
        )
    finally:
        await conn.close()
    assert row is not None and row["trace_id"] == trace_id

    assert (
        metric("keel_llm_request_duration_seconds_count", model=MODEL, outcome="ok") == before["llm_ok"] + 1
    )
    assert metric("keel_llm_time_to_first_token_seconds_count", model=MODEL) == before["ttft"] + 1
    assert metric("keel_turns_total", outcome="completed") == before["turns"] + 1
    assert metric("keel_sessions_started_total") == before["sessions"] + 1
    searched = len(named(spans, "RunActivity:retrieve"))  # 0 unless other tests left org documents
    assert metric("keel_retrieval_duration_seconds_count", outcome="ok") == before["retrievals"] + searched

    # A follow-up: no new session.
    follow = await traced.http.post(
        "/api/v1/chat", json={"message": "again", "session_id": session_id}, headers=headers
    )
    assert follow.json()["status"] == "completed"
    assert metric("keel_sessions_started_total") == before["sessions"] + 1
    assert metric("keel_turns_total", outcome="completed") == before["turns"] + 2


async def test_message_contents_only_with_the_flag(
    traced: RunningApi, spans: InMemorySpanExporter, llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT, "true")
    headers = await traced.auth("otel-bob")
    llm.enqueue(Reply("the secret answer"))
    body = (
        await traced.http.post("/api/v1/chat", json={"message": "a private question"}, headers=headers)
    ).json()
    assert body["status"] == "completed", body
    attrs = dict(one(spans, f"chat {MODEL}").attributes or {})
    sent = json.loads(str(attrs["gen_ai.input.messages"]))
    assert sent[-1] == {"role": "user", "parts": [{"type": "text", "content": "a private question"}]}
    [answer] = json.loads(str(attrs["gen_ai.output.messages"]))
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop"
    assert answer["parts"] == [{"type": "text", "content": "the secret answer"}]


async def test_a_failed_model_call_is_an_error_span_and_metric(
    traced: RunningApi, spans: InMemorySpanExporter, llm: FakeOpenAI
) -> None:
    before = metric("keel_llm_request_duration_seconds_count", model=MODEL, outcome="error")
    failed_before = metric("keel_turns_total", outcome="failed")
    headers = await traced.auth("otel-carol")
    llm.enqueue(Error(400, "bad request"))  # not retried: one attempt
    body = (await traced.http.post("/api/v1/chat", json={"message": "fail please"}, headers=headers)).json()
    assert body["status"] == "failed", body
    [chat] = named(spans, f"chat {MODEL}")
    assert (chat.attributes or {})["error.type"] == "llm_rejected"
    assert not chat.status.is_ok
    assert metric("keel_llm_request_duration_seconds_count", model=MODEL, outcome="error") == before + 1
    assert metric("keel_turns_total", outcome="failed") == failed_before + 1


async def test_a_turn_ending_with_a_budget_warning_is_counted_once(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    budgeted = settings.model_copy(
        update={"system_prompt": "Be brief.", "llm_max_output_tokens": 1000, "budget_daily_tokens": 1000}
    )
    before = metric("keel_budget_warnings_total", period="daily")
    async with running_platform(budgeted, temporal_client) as api:
        headers = await api.auth(f"otel-budget-{uuid.uuid4().hex[:6]}")
        llm.enqueue(Reply(" ".join(["word"] * 820)))
        body = (await api.http.post("/api/v1/chat", json={"message": "first"}, headers=headers)).json()
    assert body["status"] == "completed" and body["budget_warning"]["period"] == "daily", body
    assert metric("keel_budget_warnings_total", period="daily") == before + 1
