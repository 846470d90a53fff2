"""The knowledge-base services a process needs: embedder, vector index, blob store.

The embedded vector index (no ``KEEL_QDRANT_URL``) can be opened by one process
only: the worker's. The API opens none of this; it asks the worker for queries
(``KnowledgeQueryWorkflow``). Nothing opens at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.models.knowledge import ScoredChunk
from core.policy.acl import AclFilter
from core.ports import VectorIndex
from infra.blobstore import BlobStore, FilesystemBlobStore
from infra.db.knowledge_repo import KnowledgeRepository
from infra.embeddings import Embedder, create_embedder
from infra.settings import Settings
from infra.vector.factory import create_vector_index


@dataclass
class KnowledgeServices:
    embedder: Embedder
    index: VectorIndex
    blobs: BlobStore


async def search_readable(
    index: VectorIndex,
    repo: KnowledgeRepository,
    vector: Sequence[float],
    *,
    acl: AclFilter,
    top_k: int,
    query_text: str | None = None,
) -> list[ScoredChunk]:
    """The one knowledge search of every read path (chat retrieval, the query route).

    The vector engine filters by the ACL payload; Postgres then confirms each hit's
    document is still readable. Payload and row are changed under one lock (see
    ``LockedDocument``), so the second check only matters when the vector write of an
    ACL change failed after Postgres moved on -- then access follows Postgres.
    """
    hits = await index.search(vector, acl=acl, top_k=top_k, query_text=query_text)
    if not hits:
        return hits
    readable = await repo.readable_document_ids(sorted({h.doc_id for h in hits}), acl)
    return [h for h in hits if h.doc_id in readable]


@asynccontextmanager
async def open_knowledge(settings: Settings) -> AsyncIterator[KnowledgeServices]:
    index = create_vector_index(settings)
    embedder = create_embedder(
        settings,
        provider=settings.embedding_provider,
        model=settings.embedding_model,
        batch_size=settings.embedding_batch_size,
    )
    try:
        yield KnowledgeServices(
            embedder=embedder, index=index, blobs=FilesystemBlobStore(settings.resolved_blob_path)
        )
    finally:
        await embedder.aclose()
        await index.close()
