"""The allowlist as an admin sees and changes it (GET/PATCH /admin/tools), stdio servers
given by bare name, and replaying a turn whose approval was decided."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.support.sse import collect

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_allowlist")]


@pytest.fixture
def tool_settings(settings: Settings) -> Settings:
    # The counting server listens on loopback, which tool URLs may only reach when allowed.
    return settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})


async def _admin(api: RunningApi, user_id: str = "tools-admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {await api.token(user_id, roles=['OrgAdmin'])}"}


async def _add(api: RunningApi, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = await api.http.post("/api/v1/admin/tools", json=body, headers=admin, timeout=90)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _patch(api: RunningApi, admin: dict[str, str], server_id: str, **body: Any) -> dict[str, Any]:
    resp = await api.http.patch(f"/api/v1/admin/tools/{server_id}", json=body, headers=admin)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _wait_answer(api: RunningApi, headers: dict[str, str], session_id: str, answer: str) -> None:
    for _ in range(300):
        detail = (await api.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
        if answer in [m["content"] for m in detail["messages"] if m["role"] == "assistant"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the session never answered {answer!r}")


async def test_admin_lists_and_changes_tool_servers_and_the_next_turn_follows(
    tool_settings: Settings, temporal_client: Client, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    async with running_platform(tool_settings, temporal_client) as api:
        admin = await _admin(api)
        user = await api.auth("tools-patch-user")
        added = await _add(api, admin, name="counter", transport="http", url=counter.url, allowed_groups=[])

        listing = await api.http.get("/api/v1/admin/tools", headers=admin)
        assert listing.status_code == 200, listing.text
        [entry] = listing.json()["tool_servers"]
        assert entry["id"] == added["id"] and entry["name"] == "counter" and entry["transport"] == "http"
        assert entry["status"] == "ready" and entry["enabled"] is True
        assert entry["requires_approval"] is False and entry["side_effects"] is True
        assert "record_event" in {t["name"] for t in entry["tools"]}
        assert (await api.http.get("/api/v1/admin/tools", headers=user)).status_code == 403
        refused = await api.http.patch(
            f"/api/v1/admin/tools/{added['id']}", json={"enabled": False}, headers=user
        )
        assert refused.status_code == 403

        # Without approval the call runs at once.
        llm.enqueue(ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "a"}))]), Reply("One."))
        body = (await api.http.post("/api/v1/chat", json={"message": "record a"}, headers=user)).json()
        assert body["status"] == "completed" and counter.executions == 1, body

        # Now it needs approval: the next turn of the same session waits for it.
        patched = await _patch(api, admin, added["id"], requires_approval=True, timeout_s=45, max_retries=1)
        assert patched["requires_approval"] is True
        assert (patched["timeout_s"], patched["max_retries"]) == (45, 1)
        llm.enqueue(ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "b"}))]), Reply("Two."))
        body = (
            await api.http.post(
                "/api/v1/chat", json={"message": "record b", "session_id": body["session_id"]}, headers=user
            )
        ).json()
        assert body["status"] == "awaiting_approval", body
        [approval] = body["approvals"]
        assert counter.executions == 1
        decided = await api.http.post(
            f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=user
        )
        assert decided.status_code == 200 and decided.json()["status"] == "approved", decided.text
        await _wait_answer(api, user, body["session_id"], "Two.")
        assert counter.executions == 2

        # Disabled: listed as such, and no longer offered to the model.
        disabled = await _patch(api, admin, added["id"], enabled=False)
        assert disabled["status"] == "disabled" and disabled["enabled"] is False
        assert (await api.http.get("/api/v1/tools", headers=user)).json()["tools"] == []
        llm.enqueue(Reply("No tools."))
        await api.http.post("/api/v1/chat", json={"message": "anything?"}, headers=user)
        assert "tools" not in llm.requests[-1]
        [entry] = (await api.http.get("/api/v1/admin/tools", headers=admin)).json()["tool_servers"]
        assert entry["status"] == "disabled"

        # Bounded fields, at least one field, no unknown ones, an unknown id.
        for bad in ({}, {"timeout_s": 0}, {"max_retries": 11}, {"requires_approval": None}, {"name": "x"}):
            resp = await api.http.patch(f"/api/v1/admin/tools/{added['id']}", json=bad, headers=admin)
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.json()["error"]["code"] == "invalid_request"
        missing = await api.http.patch("/api/v1/admin/tools/tool-nope", json={"enabled": True}, headers=admin)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

        audit = await api.http.get(
            "/api/v1/admin/audit",
            params={"event": "admin.tool_updated", "user_id": "tools-admin"},
            headers=admin,
        )
        assert audit.status_code == 200, audit.text
        rows = [e for e in audit.json()["events"] if e["resource_id"] == added["id"]]
        changes = [r["details"]["changes"] for r in reversed(rows)]  # oldest first
        assert changes == [
            {
                "requires_approval": {"from": False, "to": True},
                "timeout_s": {"from": 30, "to": 45},
                "max_retries": {"from": 3, "to": 1},
            },
            {"enabled": {"from": True, "to": False}},
        ]


async def test_stdio_server_given_by_bare_name_is_resolved(
    settings: Settings, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker whose PATH lacks the virtual environment (not activated): the bare name
    # must still start the package's console script.
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    monkeypatch.setenv("PATH", path or "/usr/bin:/bin")
    async with running_platform(settings, temporal_client) as api:
        admin = await _admin(api, "tools-bare-admin")
        server = await _add(api, admin, name="time", transport="stdio", command="mcp-server-time")
        assert {t["name"] for t in server["tools"]} >= {"get_current_time", "convert_time"}
        assert server["command"] == str(Path(venv_bin) / "mcp-server-time")

        unknown = await api.http.post(
            "/api/v1/admin/tools",
            json={"name": "nope", "transport": "stdio", "command": "keel-no-such-mcp-server"},
            headers=admin,
        )
        assert unknown.status_code == 422, unknown.text
        assert unknown.json()["error"]["code"] == "command_not_found"
        assert [
            s["name"]
            for s in (await api.http.get("/api/v1/admin/tools", headers=admin)).json()["tool_servers"]
        ] == ["time"]


async def test_an_allowed_bare_name_stays_allowed_after_resolution(
    settings: Settings, temporal_client: Client
) -> None:
    limited = settings.model_copy(update={"mcp_stdio_allowed_commands": ["mcp-server-time"]})
    async with running_platform(limited, temporal_client) as api:
        admin = await _admin(api, "tools-allowed-admin")
        server = await _add(api, admin, name="time", transport="stdio", command="mcp-server-time")
        assert Path(server["command"]).is_absolute()
        assert "get_current_time" in {t["name"] for t in server["tools"]}
        refused = await api.http.post(
            "/api/v1/admin/tools",
            json={"name": "py", "transport": "stdio", "command": "python3"},
            headers=admin,
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "stdio_command_not_allowed"


async def test_replaying_a_decided_turn_runs_to_turn_completed(
    tool_settings: Settings, temporal_client: Client, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    async with running_platform(tool_settings, temporal_client) as api:
        await _add(
            api, await _admin(api), name="counter", transport="http", url=counter.url, requires_approval=True
        )
        user = await api.auth("tools-replay")
        llm.enqueue(
            ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "r"}))]), Reply("Replayed.")
        )
        body = (await api.http.post("/api/v1/chat", json={"message": "go"}, headers=user)).json()
        assert body["status"] == "awaiting_approval", body
        [approval] = body["approvals"]
        await api.http.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=user)
        await _wait_answer(api, user, body["session_id"], "Replayed.")

        url = f"/api/v1/sessions/{body['session_id']}/turns/{body['turn_id']}/events"
        async with api.http.stream("GET", url, headers=user) as resp:
            events = await collect(resp)
    names = [e.event for e in events]
    assert names[0] == "turn.started" and names[-1] == "turn.completed", names
    after_approval = names[names.index("approval.required") + 1 :]
    assert "message.delta" in after_approval  # the answer after the tool ran
    assert all(e.id for e in events)  # all replayed from the stream, none rebuilt
    assert events[-1].data["message"]["content"] == "Replayed."
