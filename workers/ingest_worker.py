"""The ingest worker: ingestion, batch, delete and sharing workflows and their activities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker

from activities.ingest import IngestActivities, IngestConfig
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.pool import create_pool
from infra.knowledge import KnowledgeServices
from infra.settings import Settings
from workers.queues import shutdown_options
from workflows.batch_ingest import BatchIngestWorkflow
from workflows.delete_document import DeleteDocumentWorkflow
from workflows.document_acl import DocumentAclWorkflow
from workflows.ingest_document import IngestDocumentWorkflow


@asynccontextmanager
async def ingest_activities(
    settings: Settings, knowledge: KnowledgeServices
) -> AsyncIterator[IngestActivities]:
    if not settings.database_url:
        raise RuntimeError("KEEL_DATABASE_URL must be set for the worker")
    pool = await create_pool(settings.database_url)
    try:
        yield IngestActivities(
            repo=KnowledgeRepository(pool),
            blobs=knowledge.blobs,
            embedder=knowledge.embedder,
            index=knowledge.index,
            config=IngestConfig(
                max_pages=settings.ingest_max_pages,
                chunk_chars=settings.ingest_chunk_chars,
                chunk_overlap=settings.ingest_chunk_overlap,
                embed_batch_size=settings.embedding_batch_size or 64,
                max_docx_part_bytes=settings.ingest_max_docx_part_bytes,
                parse_timeout_s=settings.ingest_parse_timeout_s,
                max_chunks_per_document=settings.ingest_max_chunks_per_document,
            ),
        )
    finally:
        await pool.close()


def build_ingest_worker(client: Client, settings: Settings, activities: IngestActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.ingest_task_queue,
        workflows=[IngestDocumentWorkflow, BatchIngestWorkflow, DeleteDocumentWorkflow, DocumentAclWorkflow],
        activities=[
            activities.parse_document,
            activities.index_chunks,
            activities.mark_document,
            activities.delete_document,
            activities.update_document_acl,
        ],
        max_concurrent_activities=8,
        **shutdown_options(settings),
    )
