"""Chat turns end to end: API → ChatSessionWorkflow → activities → fake LLM (OpenAI wire protocol)."""

from __future__ import annotations

import asyncio

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from core.names import chat_workflow_id
from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.openai_server import Error, FakeOpenAI, Reply, Truncate
from tests.support.sse import collect
from workflows.chat_session import ChatSessionWorkflow


async def test_follow_up_turn_sees_history_and_is_stored(platform: RunningApi, llm: FakeOpenAI) -> None:
    headers = await platform.auth("alice")
    first = (
        await platform.http.post("/api/v1/chat", json={"message": "my name is Alice"}, headers=headers)
    ).json()
    assert first["status"] == "completed"
    assert first["message"] == {"role": "assistant", "content": "Echo: my name is Alice", "citations": []}
    session_id = first["session_id"]

    resp = await platform.http.post(
        "/api/v1/chat", json={"message": "what is my name?", "session_id": session_id}, headers=headers
    )
    second = resp.json()
    assert second["session_id"] == session_id
    assert second["turn_id"] != first["turn_id"]
    sent = llm.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "my name is Alice"
    assert sent[2]["content"] == "Echo: my name is Alice"

    detail = (await platform.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [
        ("user", "my name is Alice"),
        ("assistant", "Echo: my name is Alice"),
        ("user", "what is my name?"),
        ("assistant", "Echo: what is my name?"),
    ]
    assert detail["turn_count"] == 2
    assert detail["title"] == "my name is Alice"
    listing = (await platform.http.get("/api/v1/sessions", headers=headers)).json()
    assert [s["id"] for s in listing["sessions"]] == [session_id]


async def test_stream_relays_deltas_and_resumes_from_last_event_id(
    platform: RunningApi, llm: FakeOpenAI
) -> None:
    headers = await platform.auth("bob")
    llm.enqueue(Reply("one two three four five", chunk_delay_s=0.01))
    async with platform.http.stream(
        "POST", "/api/v1/chat/stream", json={"message": "count"}, headers=headers
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        session_id, turn_id = resp.headers["x-session-id"], resp.headers["x-turn-id"]
        events = await collect(resp)

    names = [e.event for e in events]
    assert names[0] == "turn.started"
    assert names[-1] == "turn.completed"
    assert set(names[1:-1]) == {"message.delta"}
    deltas = "".join(e.data["delta"] for e in events if e.event == "message.delta")
    assert deltas == "one two three four five"
    final = events[-1].data
    assert final["message"]["content"] == deltas
    assert final["session_id"] == session_id and final["turn_id"] == turn_id
    assert all(e.id for e in events)

    # A client that lost the connection after the second event resumes after it.
    url = f"/api/v1/sessions/{session_id}/turns/{turn_id}/events"
    async with platform.http.stream(
        "GET", url, headers={**headers, "Last-Event-ID": events[1].id or ""}
    ) as resp:
        assert resp.status_code == 200
        resumed = await collect(resp)
    assert [e.id for e in resumed] == [e.id for e in events[2:]]

    # Without Last-Event-ID the whole turn is replayed.
    async with platform.http.stream("GET", url, headers=headers) as resp:
        replayed = await collect(resp)
    assert [e.id for e in replayed] == [e.id for e in events]


async def test_retried_model_call_resets_partial_text_and_answers_once(
    platform: RunningApi, llm: FakeOpenAI
) -> None:
    headers = await platform.auth("carol")
    llm.enqueue(Truncate("partial answer that breaks", after_chunks=2), Reply("the full answer"))
    async with platform.http.stream(
        "POST", "/api/v1/chat/stream", json={"message": "hi"}, headers=headers
    ) as resp:
        events = await collect(resp)
    names = [e.event for e in events]
    assert "message.reset" in names
    after_reset = names.index("message.reset")
    text = "".join(e.data["delta"] for e in events[after_reset:] if e.event == "message.delta")
    assert text == "the full answer"
    assert events[-1].event == "turn.completed"
    assert events[-1].data["message"]["content"] == "the full answer"
    assert llm.request_count == 2

    detail = (
        await platform.http.get(f"/api/v1/sessions/{events[-1].data['session_id']}", headers=headers)
    ).json()
    assert [m["content"] for m in detail["messages"] if m["role"] == "assistant"] == ["the full answer"]


async def test_model_rejection_is_not_retried_and_fails_the_turn(
    platform: RunningApi, llm: FakeOpenAI
) -> None:
    headers = await platform.auth("dave")
    llm.enqueue(Error(status=401, message="bad key", type="invalid_request_error"))
    resp = await platform.http.post("/api/v1/chat", json={"message": "hi"}, headers=headers)
    body = resp.json()
    assert resp.status_code == 200
    assert body["status"] == "failed"
    assert body["error"]["code"] == "llm_rejected"
    assert body["message"]["content"] == ""
    assert llm.request_count == 1


async def test_unavailable_model_is_retried_three_times(platform: RunningApi, llm: FakeOpenAI) -> None:
    headers = await platform.auth("erin")
    llm.enqueue(*(Error(status=503, message="overloaded") for _ in range(3)))
    body = (await platform.http.post("/api/v1/chat", json={"message": "hi"}, headers=headers)).json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "upstream_unavailable"
    assert llm.request_count == 3


async def test_fallback_model_answers_when_primary_fails(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    with_fallback = settings.model_copy(update={"llm_fallback_model": "fake-small"})
    async with running_platform(with_fallback, temporal_client) as platform:
        headers = await platform.auth("fran")
        llm.enqueue(*(Error(status=500, message="down") for _ in range(3)), Reply("from the fallback"))
        body = (await platform.http.post("/api/v1/chat", json={"message": "hi"}, headers=headers)).json()
    assert body["status"] == "completed"
    assert body["message"]["content"] == "from the fallback"
    assert llm.requests[-1]["model"] == "fake-small"


async def test_no_model_configured_answers_plainly(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    unconfigured = settings.model_copy(update={"llm_base_url": None, "llm_model": None, "llm_api_key": None})
    async with running_platform(unconfigured, temporal_client) as platform:
        headers = await platform.auth("gus")
        body = (await platform.http.post("/api/v1/chat", json={"message": "hi"}, headers=headers)).json()
    assert body["status"] == "completed"
    assert body["notice"] == "llm_not_configured"
    assert "No language model is configured" in body["message"]["content"]
    assert body["model"] is None
    assert llm.request_count == 0


async def test_delete_session_removes_it_everywhere(
    platform: RunningApi, llm: FakeOpenAI, temporal_client: Client
) -> None:
    headers = await platform.auth("hana")
    first = (await platform.http.post("/api/v1/chat", json={"message": "to forget"}, headers=headers)).json()
    session_id = first["session_id"]
    resp = await platform.http.delete(f"/api/v1/sessions/{session_id}", headers=headers)
    assert resp.status_code == 204
    assert (await platform.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).status_code == 404
    listing = (await platform.http.get("/api/v1/sessions", headers=headers)).json()
    assert listing["sessions"] == []
    again = await platform.http.post(
        "/api/v1/chat", json={"message": "still there?", "session_id": session_id}, headers=headers
    )
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "session_not_found"
    # The session's workflow finished with reason "deleted".
    handle = temporal_client.get_workflow_handle_for(ChatSessionWorkflow.run, chat_workflow_id(session_id))
    assert (await handle.result()).reason == "deleted"


async def test_follow_up_after_the_session_ended_idle_starts_a_new_run(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    # A follow-up is a plain Update on the running workflow; with no run open it falls
    # back to update-with-start, on both routes, and the new run reads the same transcript.
    short_idle = settings.model_copy(update={"chat_idle_timeout_s": 1})
    async with running_platform(short_idle, temporal_client) as platform:
        headers = await platform.auth("ivy-idle")
        first = (
            await platform.http.post("/api/v1/chat", json={"message": "remember 7"}, headers=headers)
        ).json()
        session_id = first["session_id"]
        handle = temporal_client.get_workflow_handle_for(
            ChatSessionWorkflow.run, chat_workflow_id(session_id)
        )
        assert (await handle.result()).reason == "idle"

        second = await platform.http.post(
            "/api/v1/chat", json={"message": "what number?", "session_id": session_id}, headers=headers
        )
        assert second.status_code == 200
        assert second.json()["status"] == "completed"
        assert [m["role"] for m in llm.requests[-1]["messages"]] == ["system", "user", "assistant", "user"]
        assert (await handle.result()).reason == "idle"  # the new run ended idle too

        async with platform.http.stream(
            "POST",
            "/api/v1/chat/stream",
            json={"message": "again?", "session_id": session_id},
            headers=headers,
        ) as resp:
            assert resp.status_code == 200
            events = await collect(resp)
        assert events[-1].event == "turn.completed"
        detail = (await platform.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
        assert detail["turn_count"] == 3


async def test_sessions_are_found_by_user_in_temporal(
    platform: RunningApi, llm: FakeOpenAI, temporal_client: Client
) -> None:
    headers = await platform.auth("ivan-search")
    body = (await platform.http.post("/api/v1/chat", json={"message": "find me"}, headers=headers)).json()
    query = 'KeelUserId = "ivan-search" AND KeelKind = "chat"'
    for _ in range(50):  # visibility is eventually consistent
        ids = [wf.id async for wf in temporal_client.list_workflows(query)]
        if ids:
            break
        await asyncio.sleep(0.1)
    assert ids == [chat_workflow_id(body["session_id"])]


async def test_azure_openai_deployment_is_called_on_the_azure_path(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    azure = settings.model_copy(
        update={
            "llm_base_url": None,
            "llm_model": None,
            "llm_api_key": None,
            "azure_openai_endpoint": llm.root_url,
            "azure_openai_deployment": "gpt-4o-keel",
            "azure_openai_api_key": SecretStr("azure-key"),
        }
    )
    async with running_platform(azure, temporal_client) as platform:
        headers = await platform.auth("azure-user")
        body = (
            await platform.http.post("/api/v1/chat", json={"message": "via azure"}, headers=headers)
        ).json()
    assert body["status"] == "completed"
    assert body["message"]["content"] == "Echo: via azure"
    recorded = llm.request_log[-1]
    assert recorded.path.startswith("/openai/deployments/gpt-4o-keel/chat/completions")
    assert recorded.headers["api-key"] == "azure-key"


async def test_health_probes(platform: RunningApi) -> None:
    assert (await platform.http.get("/health/live")).json() == {"status": "ok", "checks": {}}
    assert (await platform.http.get("/health/startup")).status_code == 200
    ready = await platform.http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"temporal": "ok", "postgres": "ok", "redis": "ok"}
    metrics = await platform.http.get("/metrics")
    assert metrics.status_code == 200


async def test_readiness_reports_an_unreachable_dependency(settings: Settings) -> None:
    from tests.conftest import serve_api

    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    server, task = await serve_api(broken)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{broken.api_port}") as http:
            ready = await http.get("/health/ready")
    finally:
        server.should_exit = True
        await task
    assert ready.status_code == 503
    assert ready.headers["retry-after"]
    assert ready.json()["checks"]["redis"].startswith("unavailable")
    assert ready.json()["checks"]["postgres"] == "ok"
