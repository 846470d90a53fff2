"""One chat turn through the API, the SSE stream and a real Temporal dev server:
a model slow to answer, citations, and cancelling a running turn."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from core.names import chat_workflow_id
from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.knowledge.test_documents_api import HANDBOOK, _kb_ids, upload, wait_settled
from tests.support.sse import Event, collect, read_events
from workflows.activity_presets import LLM_STREAM

pytestmark = pytest.mark.slow

_HEARTBEAT_S = LLM_STREAM["heartbeat_timeout"].total_seconds()


async def _llm_attempts(client: Client, session_id: str) -> list[int]:
    """The attempt number of every started ``call_llm`` activity task of the session."""
    history = await client.get_workflow_handle(chat_workflow_id(session_id)).fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled.get(e.activity_task_started_event_attributes.scheduled_event_id) == "call_llm"
    ]


async def test_model_slow_to_its_first_token_is_called_once(
    platform: RunningApi, llm: FakeOpenAI, temporal_client: Client
) -> None:
    """A model thinking for 3x the heartbeat timeout before its first token is one attempt."""
    llm.enqueue(Reply("a considered answer", ttft_s=3 * _HEARTBEAT_S))
    headers = await platform.auth("slow-model-user")
    async with platform.http.stream(
        "POST", "/api/v1/chat/stream", json={"message": "think hard"}, headers=headers, timeout=120
    ) as resp:
        assert resp.status_code == 200
        session_id = resp.headers["X-Session-ID"]
        events = await collect(resp)
    names = [e.event for e in events]
    assert "message.reset" not in names
    assert names[-1] == "turn.completed"
    assert events[-1].data["message"]["content"] == "a considered answer"
    assert llm.request_count == 1
    assert await _llm_attempts(temporal_client, session_id) == [1]
    detail = (await platform.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
    assert [m["content"] for m in detail["messages"] if m["role"] == "assistant"] == ["a considered answer"]


async def test_each_cited_chunk_is_streamed_once(platform: RunningApi, llm: FakeOpenAI) -> None:
    alice = await platform.auth("cite-once-alice")
    kb = (await _kb_ids(platform, alice))["personal"]
    doc_id = await upload(platform, alice, kb, "handbook.txt", HANDBOOK.encode())
    assert (await wait_settled(platform, alice, kb, doc_id))["status"] == "ready"
    async with platform.http.stream(
        "POST", "/api/v1/chat/stream", json={"message": "How do I reset my password?"}, headers=alice
    ) as resp:
        events = await collect(resp)
    cited = [e.data["chunk_id"] for e in events if e.event == "citation"]
    final = events[-1].data
    assert final["message"]["citations"], final
    assert sorted(cited) == sorted(c["chunk_id"] for c in final["message"]["citations"])
    assert len(cited) == len(set(cited))


async def test_cancel_route_stops_a_running_turn(platform: RunningApi, llm: FakeOpenAI) -> None:
    llm.enqueue(Reply("an answer that never comes", ttft_s=60))
    alice = await platform.auth("cancel-alice")
    mallory = await platform.auth("cancel-mallory")
    events: list[Event] = []
    async with platform.http.stream(
        "POST", "/api/v1/chat/stream", json={"message": "take your time"}, headers=alice, timeout=120
    ) as resp:
        assert resp.status_code == 200
        session_id, turn_id = resp.headers["X-Session-ID"], resp.headers["X-Turn-ID"]
        url = f"/api/v1/sessions/{session_id}/turns/{turn_id}/cancel"
        async for event in read_events(resp):
            events.append(event)
            if event.event == "turn.started":
                await asyncio.to_thread(llm.wait_for_request, 30)
                # Someone else's turn, or a turn that does not exist, is not found.
                for other, path in [
                    (mallory, url),
                    (alice, f"/api/v1/sessions/{session_id}/turns/no-such-turn/cancel"),
                ]:
                    refused = await platform.http.post(path, headers=other)
                    assert refused.status_code == 404, refused.text
                cancelled = await platform.http.post(url, headers=alice)
                assert cancelled.status_code == 202, cancelled.text
                assert cancelled.json() == {
                    "session_id": session_id,
                    "turn_id": turn_id,
                    "status": "cancelling",
                }
            if event.event in ("turn.completed", "error"):
                break
    last = events[-1]
    assert last.event == "error" and last.data["code"] == "cancelled", last
    detail = (await platform.http.get(f"/api/v1/sessions/{session_id}", headers=alice)).json()
    assert [(t["id"], t["status"]) for t in detail["turns"]] == [(turn_id, "cancelled")]
    # A finished turn cannot be cancelled again.
    again = await platform.http.post(url, headers=alice)
    assert again.status_code == 409 and again.json()["error"]["code"] == "stale_request"
