"""Approvals (issue 9): secrets in a call's arguments never reach the approval view, the
event stream, the tool tables or workflow history, yet the tool receives them; and the
separation of duties (no self-approval in an approver group, no API key approving its own
call). Real Temporal, Postgres, Redis and the counting MCP server over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client

from core.names import chat_workflow_id
from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_allowlist")]

SECRET = "hunter2-correct-horse-battery"


@pytest.fixture
def tool_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"], "tool_approval_timeout_s": 60})


async def _add(api: RunningApi, **body: Any) -> None:
    admin = {"Authorization": f"Bearer {await api.token('duty-admin', roles=['OrgAdmin'])}"}
    resp = await api.http.post("/api/v1/admin/tools", json=body, headers=admin, timeout=90)
    assert resp.status_code == 201, resp.text


async def _wait_final_answer(api: RunningApi, headers: dict[str, str], session_id: str) -> str:
    for _ in range(300):
        detail = (await api.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
        finals = [m for m in detail["messages"] if m["role"] == "assistant" and m["content"]]
        if finals:
            return str(finals[-1]["content"])
        await asyncio.sleep(0.1)
    raise AssertionError("the turn never finished")


async def _rows_text(settings: Settings, session_id: str) -> str:
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        parts: list[str] = []
        for table in ("tool_approvals", "tool_invocations", "chat_messages", "audit_events"):
            rows = await conn.fetch(f"SELECT t::text AS row FROM {table} t WHERE session_id = $1", session_id)
            assert rows or table == "audit_events", table
            parts.extend(r["row"] for r in rows)
        # The full arguments are kept only until the call ran (or will not run).
        assert (
            await conn.fetchval("SELECT count(*) FROM tool_call_arguments WHERE session_id = $1", session_id)
            == 0
        )
        return "\n".join(parts)
    finally:
        await conn.close()


async def test_approval_arguments_are_redacted_everywhere_but_the_tool_call(
    tool_settings: Settings, temporal_client: Client, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    from tests.support.sse import collect

    arguments = {"username": "svc-deploy", "password": SECRET}
    async with running_platform(tool_settings, temporal_client) as api:
        await _add(api, name="vault", transport="http", url=counter.url, requires_approval=True)
        user = await api.auth("duty-redact")
        llm.enqueue(ToolCalls([ToolCall("vault__sign_in", json.dumps(arguments))]), Reply("Signed in."))
        async with api.http.stream(
            "POST", "/api/v1/chat/stream", json={"message": "sign in to the vault"}, headers=user
        ) as resp:
            session_id = resp.headers["x-session-id"]
            turn_id = resp.headers["x-turn-id"]
            events = await collect(resp, until=("approval.required", "turn.completed", "error"))
        approval = events[-1].data
        assert approval["arguments"] == {"username": "svc-deploy", "password": "***"}
        listed = (await api.http.get("/api/v1/approvals", headers=user)).text
        assert "svc-deploy" in listed and SECRET not in listed
        ok = await api.http.post(
            f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=user
        )
        assert ok.status_code == 200, ok.text
        assert await _wait_final_answer(api, user, session_id) == "Signed in."
        url = f"/api/v1/sessions/{session_id}/turns/{turn_id}/events"
        async with api.http.stream("GET", url, headers=user) as resp:
            replayed = await collect(resp)
        session = (await api.http.get(f"/api/v1/sessions/{session_id}", headers=user)).text
    # The tool got the real password ...
    call = counter.wait_for_call()
    assert call.tool == "sign_in" and call.arguments == arguments
    # ... and it is nowhere else: stream, session, tables, workflow history.
    assert all(SECRET not in json.dumps(e.data) for e in [*events, *replayed])
    assert SECRET not in session
    assert SECRET not in await _rows_text(tool_settings, session_id)
    history = await temporal_client.get_workflow_handle(chat_workflow_id(session_id)).fetch_history()
    payloads = "\n".join(_payload_texts(json.loads(history.to_json())))
    assert "vault__sign_in" in payloads and "svc-deploy" in payloads
    assert SECRET not in payloads and SECRET not in history.to_json()


def _payload_texts(node: Any) -> Iterator[str]:
    """Every payload of a history (their ``data`` is base64 in the JSON form), decoded."""
    if isinstance(node, dict):
        if "metadata" in node and isinstance(node.get("data"), str):
            yield base64.b64decode(node["data"]).decode("utf-8", "replace")
        for value in node.values():
            yield from _payload_texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payload_texts(value)


async def test_requester_in_the_approver_group_cannot_approve_their_own_call(
    tool_settings: Settings, temporal_client: Client, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    async with running_platform(tool_settings, temporal_client) as api:
        await _add(
            api,
            name="counter",
            transport="http",
            url=counter.url,
            requires_approval=True,
            approver_group="g-change-board",
        )
        requester = {"Authorization": f"Bearer {await api.token('duty-req', groups=['g-change-board'])}"}
        other = {"Authorization": f"Bearer {await api.token('duty-peer', groups=['g-change-board'])}"}
        llm.enqueue(ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "go"}))]), Reply("Ok."))
        body = (await api.http.post("/api/v1/chat", json={"message": "go"}, headers=requester)).json()
        [approval] = body["approvals"]
        assert (await api.http.get("/api/v1/approvals", headers=requester)).json()["approvals"] == []
        own = await api.http.post(
            f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=requester
        )
        assert own.status_code == 403, own.text
        assert own.json()["error"]["code"] == "separation_of_duties"
        await asyncio.sleep(0.3)
        assert counter.executions == 0
        peer = await api.http.post(
            f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=other
        )
        assert peer.status_code == 200, peer.text
        assert await _wait_final_answer(api, requester, body["session_id"]) == "Ok."
    assert counter.executions == 1


async def test_an_api_key_cannot_approve_a_call_it_made(
    tool_settings: Settings, temporal_client: Client, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    async with running_platform(tool_settings, temporal_client) as api:
        await _add(api, name="counter", transport="http", url=counter.url, requires_approval=True)
        person = await api.auth("duty-keyowner")
        created = await api.http.post(
            "/api/v1/api-keys", json={"name": "bot", "scopes": ["use_agent"]}, headers=person
        )
        assert created.status_code == 201, created.text
        bot = {"Authorization": f"Bearer {created.json()['key']}"}
        llm.enqueue(ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "k"}))]), Reply("Ok."))
        body = (await api.http.post("/api/v1/chat", json={"message": "go"}, headers=bot)).json()
        assert body["status"] == "awaiting_approval", body
        [approval] = body["approvals"]
        refused = await api.http.post(
            f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=bot
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "separation_of_duties"
        await asyncio.sleep(0.3)
        assert counter.executions == 0
        ok = await api.http.post(
            f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=person
        )
        assert ok.status_code == 200, ok.text
        assert await _wait_final_answer(api, person, body["session_id"]) == "Ok."
    assert counter.executions == 1
