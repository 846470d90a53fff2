"""Worker killed mid-ingestion: the document still ends ready, with no duplicate chunks."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import asyncpg
import pytest
from temporalio.client import Client

from core.names import ingest_workflow_id
from infra.settings import Settings
from infra.vector.factory import create_vector_index
from tests.conftest import RunningApi
from tests.knowledge.test_documents_api import _kb_ids, upload, wait_settled
from tests.support.workers import spawn_worker

pytestmark = pytest.mark.slow


def _spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return spawn_worker(settings, KEEL_QDRANT_PATH=str(settings.qdrant_path), KEEL_EMBEDDING_BATCH_SIZE="16")


async def _indexing_progress(client: Client, doc_id: str) -> int:
    desc = await client.get_workflow_handle(ingest_workflow_id(doc_id)).describe()
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name == "index_chunks" and pending.heartbeat_details.payloads:
            return int(pending.heartbeat_details.payloads[0].data)
    return 0


async def test_worker_killed_mid_indexing(
    api: RunningApi, settings: Settings, temporal_client: Client
) -> None:
    owner = await api.auth("crash-ingest")
    kb = (await _kb_ids(api, owner))["personal"]
    text = "\n\n".join(
        f"Paragraph {n}: the quarterly maintenance window for system {n % 97} starts at {n % 24}:00 "
        f"and the on-call engineer confirms the rollback plan with team {n % 13} beforehand." * 2
        for n in range(600)
    )
    worker = _spawn_worker(settings)
    second: subprocess.Popen[bytes] | None = None
    try:
        doc_id = await upload(api, owner, kb, "runbook.txt", text.encode())
        for _ in range(1200):
            if await _indexing_progress(temporal_client, doc_id) > 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("indexing never reported progress")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        second = _spawn_worker(settings)
        doc = await wait_settled(api, owner, kb, doc_id, timeout_s=300)
    finally:
        for proc in (worker, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)

    assert doc["status"] == "ready", doc
    assert doc["chunk_count"] > 50
    history = await temporal_client.get_workflow_handle(ingest_workflow_id(doc_id)).fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) >= 2  # indexing really was retried after the kill

    # Every chunk is in the index exactly once (deterministic point ids).
    index = create_vector_index(settings)
    try:
        assert await index.count(doc_id) == doc["chunk_count"]
    finally:
        await index.close()
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM document_chunks WHERE doc_id = $1", doc_id)
            == doc["chunk_count"]
        )
    finally:
        await conn.close()
