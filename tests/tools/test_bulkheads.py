"""Bulkheads: tool calls run in their own worker pool (the tools task queue). With that
pool gone (the slowest a dependency can be), a turn that calls a tool waits for it, and
another person's plain turn is still answered at once; when a tools worker comes back,
the waiting turn finishes with the tool's result."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from infra.knowledge import open_knowledge
from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.support.model_requests import wait_for_requests
from workers.chat_worker import chat_activities, running_chat_workers

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_allowlist")]

_ALL_BUT_TOOLS = ("chat", "retrieval", "ingest", "audit")


async def _add_time_server(api: RunningApi) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {await api.token('bulkhead-admin', roles=['OrgAdmin'])}"}
    body = {
        "name": "time",
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-m", "mcp_server_time"],
    }
    resp = await api.http.post("/api/v1/admin/tools", json=body, headers=admin, timeout=90)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_a_missing_tools_pool_does_not_hold_up_other_turns(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, tmp_path: Path
) -> None:
    # The tools pool's own process: it never touches the vector index (its own, unused path).
    tools_only = settings.model_copy(update={"qdrant_path": tmp_path / "tools-pool-index"})
    async with (
        open_knowledge(tools_only) as unused_index,
        chat_activities(tools_only, unused_index) as pool_activities,
        running_platform(settings, temporal_client, groups=_ALL_BUT_TOOLS) as api,
    ):
        async with running_chat_workers(temporal_client, settings, pool_activities, groups=("tools",)):
            await _add_time_server(api)  # discovery is a tools-pool workflow
        # No tools worker from here on.
        llm.enqueue(
            ToolCalls([ToolCall("time__get_current_time", json.dumps({"timezone": "UTC"}))]),
            Reply("Plain answer for B."),
            Reply("It is some time in UTC."),
        )
        asker, other = await api.auth("bulkhead-a"), await api.auth("bulkhead-b")
        tool_turn = asyncio.create_task(
            api.http.post("/api/v1/chat", json={"message": "what time is it?"}, headers=asker, timeout=120)
        )
        await wait_for_requests(llm, 1)  # A's model call asked for the tool; the call is queued
        plain = await api.http.post("/api/v1/chat", json={"message": "hello"}, headers=other, timeout=30)
        assert plain.status_code == 200 and plain.json()["message"]["content"] == "Plain answer for B."
        await asyncio.sleep(1.0)
        assert not tool_turn.done(), "the tool call ran without a tools worker"
        assert llm.request_count == 2

        async with running_chat_workers(temporal_client, settings, pool_activities, groups=("tools",)):
            resp = await asyncio.wait_for(tool_turn, timeout=90)
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "completed", body
    assert body["message"]["content"] == "It is some time in UTC."
    [call] = body["tool_calls"]
    assert call["status"] == "completed" and "UTC" in call["result"]
