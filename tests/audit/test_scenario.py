"""A scripted scenario through the real API and worker; afterwards every audited
event appears exactly once, with its required fields, in ``GET /api/v1/admin/audit``
(and in the export), and the chain verifies."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client

from infra.settings import Settings
from tests.audit.conftest import keel_audit
from tests.conftest import RunningApi, running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.knowledge.test_documents_api import HANDBOOK, upload, wait_settled

pytestmark = pytest.mark.slow

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(autouse=True)
async def _no_tool_servers_left(settings: Settings) -> AsyncIterator[None]:
    yield
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        await conn.execute("UPDATE tool_servers SET deleted_at = now() WHERE deleted_at IS NULL")
    finally:
        await conn.close()


@pytest.fixture
def counter() -> Iterator[CounterMcpServer]:
    with CounterMcpServer() as server:
        yield server


async def audit_events(api: RunningApi, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    """Every page of ``GET /admin/audit`` for ``query`` (newest first)."""
    events: list[dict[str, Any]] = []
    params = {**query, "limit": 50}
    while True:
        resp = await api.http.get("/api/v1/admin/audit", params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        events += body["events"]
        if body["next_before_seq"] is None:
            return events
        params["before_seq"] = body["next_before_seq"]


async def _wait_for_event(api: RunningApi, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    for _ in range(300):
        found = await audit_events(api, headers, **query)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no audit event for {query}")


async def _wait_answer(api: RunningApi, headers: dict[str, str], session_id: str, answer: str) -> None:
    for _ in range(300):
        detail = (await api.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
        if any(m["role"] == "assistant" and m["content"] == answer for m in detail["messages"]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the turn never finished")


async def test_every_scenario_event_is_audited_once(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    run = uuid.uuid4().hex[:6]
    alice_id, bob_id, admin_id = f"aud-alice-{run}", f"aud-bob-{run}", f"aud-admin-{run}"
    # The counter's ``name`` argument counts as a secret here, so the audit shows it redacted.
    tool_settings = settings.model_copy(
        update={"tool_allowed_hosts": ["127.0.0.1"], "tool_redact_pattern": r"^name$|secret"}
    )
    async with running_platform(tool_settings, temporal_client) as api:
        admin = {"Authorization": f"Bearer {await api.token(admin_id, roles=['OrgAdmin'])}"}
        alice = await api.auth(alice_id)

        # Admin changes: an org knowledge base, a tool server (approval required).
        kb = await api.http.post(
            "/api/v1/admin/knowledge-bases", json={"name": f"Policies {run}"}, headers=admin
        )
        assert kb.status_code == 201, kb.text
        tool = await api.http.post(
            "/api/v1/admin/tools",
            json={"name": f"ctr{run}", "transport": "http", "url": counter.url, "requires_approval": True},
            headers=admin,
            timeout=90,
        )
        assert tool.status_code == 201, tool.text

        # Documents: upload one, a batch of two (one empty: it fails), share, unshare, delete.
        personal = (await api.http.get("/api/v1/knowledge-bases", headers=alice)).json()["knowledge_bases"][0]
        assert personal["personal"]
        doc_id = await upload(api, alice, personal["id"], "handbook.txt", HANDBOOK.encode())
        assert (await wait_settled(api, alice, personal["id"], doc_id))["status"] == "ready"
        batch = await api.http.post(
            f"/api/v1/knowledge-bases/{personal['id']}/ingestions",
            files=[
                ("files", ("a.txt", HANDBOOK.encode(), "text/plain")),
                ("files", ("b.txt", b"", "text/plain")),
            ],
            headers=alice,
        )
        assert batch.status_code == 202, batch.text
        batch_docs = batch.json()["document_ids"]
        empty = await wait_settled(api, alice, personal["id"], batch_docs[1])
        assert empty["status"] == "failed"
        shares = f"/api/v1/knowledge-bases/{personal['id']}/documents/{doc_id}/shares"
        body = {"user_ids": [bob_id], "group_ids": ["g-finance"]}
        assert (await api.http.post(shares, json=body, headers=alice)).status_code == 200
        assert (await api.http.request("DELETE", shares, json=body, headers=alice)).status_code == 200
        deleted = await api.http.delete(
            f"/api/v1/knowledge-bases/{personal['id']}/documents/{doc_id}", headers=alice
        )
        assert deleted.status_code == 204

        # The admin retries the failed ingestion.
        ops = (await api.http.get("/api/v1/admin/failed-operations", headers=admin)).json()[
            "failed_operations"
        ]
        op = next(o for o in ops if o["resource_id"] == batch_docs[1])
        retried = await api.http.post(f"/api/v1/admin/failed-operations/{op['id']}/retry", headers=admin)
        assert retried.status_code == 202, retried.text

        # A chat session: a new session, a tool call that needs (and gets) approval, then delete it.
        tool_name = f"ctr{run}__record_event"
        llm.enqueue(Reply("Hello."))
        first = await api.http.post("/api/v1/chat", json={"message": "hi"}, headers=alice)
        assert first.status_code == 200, first.text
        session_id = first.json()["session_id"]
        llm.enqueue(
            ToolCalls([ToolCall(tool_name, json.dumps({"name": "deploy"}), id="call_audit_1")]),
            Reply("Recorded."),
        )
        turn = await api.http.post(
            "/api/v1/chat", json={"message": "record deploy", "session_id": session_id}, headers=alice
        )
        [approval] = turn.json()["approvals"]
        decided = await api.http.post(
            f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=alice
        )
        assert decided.status_code == 200, decided.text
        await _wait_answer(api, alice, session_id, "Recorded.")
        assert counter.executions == 1 and counter.calls[-1][0] == "deploy"  # the tool got the real value
        await _wait_for_event(api, admin, event="tool.invoked", user_id=alice_id)
        assert (await api.http.delete(f"/api/v1/sessions/{session_id}", headers=alice)).status_code == 204

        # Access decisions: a User is refused an admin route; the admin's privileged call is allowed.
        refused = await api.http.get("/api/v1/admin/audit", headers=alice)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        removed = await api.http.delete(f"/api/v1/admin/tools/{tool.json()['id']}", headers=admin)
        assert removed.status_code == 204

        mine = await audit_events(api, admin, user_id=alice_id)
        theirs = await audit_events(api, admin, user_id=admin_id)

        counts = Counter(e["event"] for e in mine)
        assert counts == {
            "document.uploaded": 3,
            "document.shared": 1,
            "document.unshared": 1,
            "document.deleted": 1,
            "session.started": 1,
            "tool.approval_decided": 1,
            "tool.invoked": 1,
            "session.ended": 1,
            "access.denied": 1,
        }, counts
        admin_counts = Counter(e["event"] for e in theirs)
        for event in (
            "admin.knowledge_base_created",
            "admin.tool_added",
            "admin.tool_removed",
            "admin.operation_retried",
        ):
            assert admin_counts[event] == 1, (event, admin_counts)
        allowed = [e for e in theirs if e["event"] == "access.allowed"]
        assert {e["details"]["permission"] for e in allowed} >= {
            "manage_org_kb",
            "manage_tools",
            "view_audit_logs",
        }

        for row in mine + theirs:
            assert row["user_id"] in (alice_id, admin_id)
            assert row["seq"] >= 1 and re.fullmatch(r"[0-9a-f]{64}", row["hash"])
            assert row["occurred_at"] and row["outcome"] in ("success", "failure", "denied")
        by_event = {e["event"]: e for e in mine}
        uploads = [e for e in mine if e["event"] == "document.uploaded"]
        assert {e["resource_id"] for e in uploads} == {doc_id, *batch_docs}
        assert {e["details"].get("batch_id") for e in uploads} == {None, batch.json()["batch_id"]}
        assert by_event["document.shared"]["resource_id"] == doc_id
        assert by_event["document.shared"]["details"]["principals"] == [f"user:{bob_id}", "group:g-finance"]
        assert by_event["document.unshared"]["details"]["principals"] == [f"user:{bob_id}", "group:g-finance"]
        assert by_event["document.deleted"]["resource_id"] == doc_id
        for name in ("session.started", "session.ended", "tool.invoked", "tool.approval_decided"):
            assert by_event[name]["session_id"] == session_id, name
        invoked = by_event["tool.invoked"]
        assert invoked["resource_id"] == tool_name and invoked["outcome"] == "success"
        assert invoked["details"]["arguments"] == {"name": "***"}
        assert invoked["details"]["call_id"] == "call_audit_1"
        assert by_event["tool.approval_decided"]["details"]["decision"] == "approve"
        denied = by_event["access.denied"]
        assert denied["outcome"] == "denied" and denied["resource_id"] == "GET /api/v1/admin/audit"
        # Events from API requests carry the request's trace and request ids.
        for name in ("document.uploaded", "document.shared", "session.started", "access.denied"):
            assert HEX32.match(by_event[name]["trace_id"] or ""), name
            assert by_event[name]["request_id"], name

        # The export holds the same rows.
        exported = await api.http.get(
            "/api/v1/admin/audit/export", params={"user_id": alice_id}, headers=admin
        )
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert [line["seq"] for line in lines] == sorted(e["seq"] for e in mine)

    verified = keel_audit(settings, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
