"""A batch ingestion and each of its documents' workflows are found by the README's
Temporal UI filter (``KeelUserId`` and ``KeelKind``)."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from core.names import batch_workflow_id, ingest_workflow_id
from tests.conftest import RunningApi
from tests.knowledge.test_documents_api import HANDBOOK


async def test_batch_and_its_children_carry_the_users_search_attributes(
    platform: RunningApi, temporal_client: Client
) -> None:
    owner = await platform.auth("kb-batch-attrs")
    kbs = (await platform.http.get("/api/v1/knowledge-bases", headers=owner)).json()["knowledge_bases"]
    kb = next(k["id"] for k in kbs if k["personal"])
    files = [
        ("files", (f"attrs{n}.txt", f"Attribute doc {n}. {HANDBOOK}".encode(), "text/plain"))
        for n in range(3)
    ]
    resp = await platform.http.post(f"/api/v1/knowledge-bases/{kb}/ingestions", files=files, headers=owner)
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    handle = temporal_client.get_workflow_handle(batch_workflow_id(batch["batch_id"]))
    await handle.result()

    expected = {batch_workflow_id(batch["batch_id"])} | {ingest_workflow_id(d) for d in batch["document_ids"]}
    query = 'KeelUserId = "kb-batch-attrs" AND KeelKind = "ingest"'
    found: set[str] = set()
    for _ in range(100):  # visibility is eventually consistent
        found = {wf.id async for wf in temporal_client.list_workflows(query)}
        if found >= expected:
            break
        await asyncio.sleep(0.1)
    assert found == expected
