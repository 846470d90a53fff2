"""Replay committed workflow histories with today's code: every workflow has one.

Keel has not been released, so nothing runs that old code must stay compatible
with (docs/versioning.md): a workflow change is made directly, and the histories
are re-recorded with today's code. All were recorded after the ``workflow.patched``
branches were retired (issue 10): ``two_turns_then_delete``, ``retried_model_call``
and ``rejected_model_call`` by ``test_record_histories``; ``v2_*`` (knowledge
search, a tool call approved through the ``decide_approval`` Update, ingestion,
batch, share, delete, discovery) by ``test_record_v2_histories``; ``v3_budgeted_turns``
by tests/budgets/test_record_history.py; ``v4_*`` (a call proposed after reading a
shared document, arguments by reference) by ``test_record_v4_histories``. ``v5_knowledge_query``
records a direct knowledge query searched in the worker.

A replay failure means the change is not deterministic for histories recorded
before it. Before the first release: re-record, with ``KEEL_RECORD_HISTORIES=1
PYTHONPATH=$PWD .venv/bin/python -m pytest tests/workflows/test_replay.py
tests/budgets/test_record_history.py -k record`` (``-k record_v4`` records one set).
After a release, such a change goes behind ``workflow.patched()`` or Worker
Versioning instead, and the old histories stay.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.models.knowledge_query import KnowledgeQueryInput
from core.models.principal import Principal
from core.names import (
    batch_workflow_id,
    chat_workflow_id,
    delete_workflow_id,
    ingest_workflow_id,
    knowledge_query_workflow_id,
    tool_discovery_workflow_id,
)
from core.policy.acl import acl_filter
from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import (
    Error,
    FakeOpenAI,
    Reply,
    ToolCall,
    ToolCalls,
    follows_tool_call_markers,
    tool_call_marker,
)
from tests.knowledge.test_documents_api import HANDBOOK, upload, wait_settled
from workflows.batch_ingest import BatchIngestWorkflow
from workflows.chat_session import ChatSessionWorkflow
from workflows.delete_document import DeleteDocumentWorkflow
from workflows.document_acl import DocumentAclWorkflow
from workflows.ingest_document import IngestDocumentWorkflow
from workflows.knowledge_query import KnowledgeQueryWorkflow
from workflows.tool_discovery import ToolDiscoveryWorkflow

HISTORIES = Path(__file__).parent / "histories"
ALL_WORKFLOWS = [
    ChatSessionWorkflow,
    IngestDocumentWorkflow,
    BatchIngestWorkflow,
    DeleteDocumentWorkflow,
    DocumentAclWorkflow,
    ToolDiscoveryWorkflow,
    KnowledgeQueryWorkflow,
]


def _histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_histories_are_committed() -> None:
    assert len(_histories()) >= 11


def test_every_workflow_has_a_history() -> None:
    recorded = {
        WorkflowHistory.from_json(d["workflow_id"], d["history"])
        .events[0]
        .workflow_execution_started_event_attributes.workflow_type.name
        for d in (json.loads(p.read_text()) for p in _histories())
    }
    assert recorded >= {w.__name__ for w in ALL_WORKFLOWS}


@pytest.mark.parametrize("path", _histories(), ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


@pytest.mark.skipif(not os.environ.get("KEEL_RECORD_HISTORIES"), reason="records histories on demand")
async def test_record_histories(platform: RunningApi, llm: FakeOpenAI, temporal_client: Client) -> None:
    headers = await platform.auth("replay-user")

    async def save(name: str, session_id: str) -> None:
        history = await temporal_client.get_workflow_handle(chat_workflow_id(session_id)).fetch_history()
        payload = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
        (HISTORIES / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")

    # two turns, then delete (the run completes)
    llm.enqueue(Reply("first answer"), Reply("second answer"))
    first = (await platform.http.post("/api/v1/chat", json={"message": "one"}, headers=headers)).json()
    sid = first["session_id"]
    await platform.http.post("/api/v1/chat", json={"message": "two", "session_id": sid}, headers=headers)
    assert (await platform.http.delete(f"/api/v1/sessions/{sid}", headers=headers)).status_code == 204
    await save("two_turns_then_delete", sid)

    # a model call retried once, then answered
    llm.enqueue(Error(status=503, message="busy"), Reply("after a retry"))
    retried = (await platform.http.post("/api/v1/chat", json={"message": "retry"}, headers=headers)).json()
    await save("retried_model_call", retried["session_id"])

    # a non-retryable rejection fails the turn
    llm.enqueue(Error(status=400, message="bad request"))
    failed = (await platform.http.post("/api/v1/chat", json={"message": "reject"}, headers=headers)).json()
    assert failed["status"] == "failed"
    await save("rejected_model_call", failed["session_id"])


@pytest.mark.skipif(not os.environ.get("KEEL_RECORD_HISTORIES"), reason="records histories on demand")
async def test_record_v2_histories(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, tmp_path: Path
) -> None:
    """Knowledge search, a tool call waiting for approval, ingestion, batch, share, delete, discovery."""

    async def save(name: str, workflow_id: str) -> None:
        history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
        payload = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
        (HISTORIES / f"v2_{name}.json").write_text(json.dumps(payload, indent=1) + "\n")

    with CounterMcpServer() as counter:
        tool_settings = settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})
        async with running_platform(tool_settings, temporal_client) as api:
            admin = {"Authorization": f"Bearer {await api.token('replay-admin', roles=['OrgAdmin'])}"}
            user = await api.auth("replay-v2")
            added = await api.http.post(
                "/api/v1/admin/tools",
                json={"name": "counter", "transport": "http", "url": counter.url, "requires_approval": True},
                headers=admin,
            )
            assert added.status_code == 201, added.text
            await save("tool_discovery", tool_discovery_workflow_id(added.json()["id"]))

            kb = (await api.http.get("/api/v1/knowledge-bases", headers=user)).json()["knowledge_bases"][0][
                "id"
            ]
            doc_id = await upload(api, user, kb, "handbook.txt", HANDBOOK.encode())
            assert (await wait_settled(api, user, kb, doc_id))["status"] == "ready"
            await save("ingest_document", ingest_workflow_id(doc_id))
            shared = await api.http.post(
                f"/api/v1/knowledge-bases/{kb}/documents/{doc_id}/shares",
                json={"user_ids": ["x"]},
                headers=user,
            )
            assert shared.status_code == 200
            acl_ids = [
                wf.id
                async for wf in temporal_client.list_workflows("WorkflowType = 'DocumentAclWorkflow'")
                if doc_id in wf.id
            ]
            await save("document_acl", acl_ids[0])

            llm.enqueue(
                ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "r"}))]), Reply("Done.")
            )
            body = (
                await api.http.post("/api/v1/chat", json={"message": "reset password"}, headers=user)
            ).json()
            [approval] = body["approvals"]
            await api.http.post(
                f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=user
            )
            for _ in range(200):
                detail = (await api.http.get(f"/api/v1/sessions/{body['session_id']}", headers=user)).json()
                if detail["turn_count"] == 1:
                    break
                await asyncio.sleep(0.1)
            await save("chat_retrieval_tool_approval", chat_workflow_id(body["session_id"]))

            files = [("files", (f"b{n}.txt", HANDBOOK.encode(), "text/plain")) for n in range(2)]
            batch = (
                await api.http.post(f"/api/v1/knowledge-bases/{kb}/ingestions", files=files, headers=user)
            ).json()
            for _ in range(300):
                if (await api.http.get(f"/api/v1/ingestions/{batch['batch_id']}", headers=user)).json()[
                    "done"
                ]:
                    break
                await asyncio.sleep(0.1)
            await save("batch_ingest", batch_workflow_id(batch["batch_id"]))
            assert (
                await api.http.delete(f"/api/v1/knowledge-bases/{kb}/documents/{doc_id}", headers=user)
            ).status_code == 204
            await save("delete_document", delete_workflow_id(doc_id))
            await api.http.delete(f"/api/v1/admin/tools/{added.json()['id']}", headers=admin)


@pytest.mark.skipif(not os.environ.get("KEEL_RECORD_HISTORIES"), reason="records histories on demand")
async def test_record_v4_histories(settings: Settings, temporal_client: Client, llm: FakeOpenAI) -> None:
    """Issue 9: a call proposed after reading a shared document waits for approval (with the
    documents and owners), its secret argument travels by reference only."""
    with CounterMcpServer() as counter:
        tool_settings = settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})
        async with running_platform(tool_settings, temporal_client) as api:
            admin = {"Authorization": f"Bearer {await api.token('replay-admin', roles=['OrgAdmin'])}"}
            added = await api.http.post(
                "/api/v1/admin/tools",
                json={"name": "vault", "transport": "http", "url": counter.url},
                headers=admin,
            )
            assert added.status_code == 201, added.text
            alice, bob = await api.auth("replay-v4-alice"), await api.auth("replay-v4-bob")
            kbs = (await api.http.get("/api/v1/knowledge-bases", headers=alice)).json()["knowledge_bases"]
            kb = next(k["id"] for k in kbs if k["personal"])
            marker = tool_call_marker("vault__sign_in", {"username": "svc", "password": "replay-s3cret"})
            text = f"Vault runbook\n\nThe vault sign-in procedure for the team.\n\n{marker}"
            doc_id = await upload(api, alice, kb, "vault.txt", text.encode())
            assert (await wait_settled(api, alice, kb, doc_id))["status"] == "ready"
            shared = await api.http.post(
                f"/api/v1/knowledge-bases/{kb}/documents/{doc_id}/shares",
                json={"user_ids": ["replay-v4-bob"]},
                headers=alice,
            )
            assert shared.status_code == 200
            llm.set_default(follows_tool_call_markers("Signed in."))
            body = (
                await api.http.post(
                    "/api/v1/chat",
                    json={"message": "how do I sign in to the vault?", "knowledge_base_ids": [kb]},
                    headers=bob,
                )
            ).json()
            [approval] = body["approvals"]
            assert approval["context_documents"] and approval["arguments"]["password"] == "***"
            await api.http.post(
                f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"}, headers=bob
            )
            for _ in range(200):
                detail = (await api.http.get(f"/api/v1/sessions/{body['session_id']}", headers=bob)).json()
                if detail["turn_count"] == 1:
                    break
                await asyncio.sleep(0.1)
            history = await temporal_client.get_workflow_handle(
                chat_workflow_id(body["session_id"])
            ).fetch_history()
            payload = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
            (HISTORIES / "v4_injected_call_approval.json").write_text(json.dumps(payload, indent=1) + "\n")
            await api.http.delete(f"/api/v1/admin/tools/{added.json()['id']}", headers=admin)


@pytest.mark.skipif(not os.environ.get("KEEL_RECORD_HISTORIES"), reason="records histories on demand")
async def test_record_v5_knowledge_query(
    platform: RunningApi, settings: Settings, temporal_client: Client
) -> None:
    """Issue 10: the query route's search runs in the worker, one workflow per request."""
    user = await platform.auth("replay-v5")
    kbs = (await platform.http.get("/api/v1/knowledge-bases", headers=user)).json()["knowledge_bases"]
    kb = next(k["id"] for k in kbs if k["personal"])
    doc_id = await upload(platform, user, kb, "handbook.txt", HANDBOOK.encode())
    assert (await wait_settled(platform, user, kb, doc_id))["status"] == "ready"
    workflow_id = knowledge_query_workflow_id("replay-v5")
    found = await temporal_client.execute_workflow(
        KnowledgeQueryWorkflow.run,
        KnowledgeQueryInput(
            acl=acl_filter(Principal(user_id="replay-v5"), knowledge_base_ids=[kb]), query="password", top_k=3
        ),
        id=workflow_id,
        task_queue=settings.chat_task_queue,
    )
    assert found.chunks and found.chunks[0].doc_id == doc_id
    history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
    payload = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
    (HISTORIES / "v5_knowledge_query.json").write_text(json.dumps(payload, indent=1) + "\n")
