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
    min_similarity: float | None = None,
) -> list[ScoredChunk]:
    """The one knowledge search of every read path (chat retrieval, the query route).

    ``min_similarity`` (chat: ``KEEL_RETRIEVAL_MIN_SCORE``) drops hits whose dense cosine
    similarity to the query is below it, so a message unrelated to every document (a
    greeting) finds nothing to cite; the fused RRF score is rank-based and cannot say so.

    The vector engine filters by the ACL payload; Postgres then confirms each hit's
    document is still readable under the whole ``acl`` (for an audience filter from
    ``acl_filter_for_audience``: by the asker and by every member, the same conjunction
    the engine applied). Payload and row are changed under one lock (see
    ``LockedDocument``), so the second check only matters when the vector write of an
    ACL change failed after Postgres moved on -- then access follows Postgres -- and
    while a new version of a document is indexed: only chunks of the version Postgres
    names answer, so an old version's passages are never mixed with the new one's.
    """
    hits = await index.search(vector, acl=acl, top_k=top_k, query_text=query_text)
    if min_similarity:
        hits = [h for h in hits if h.similarity is not None and h.similarity >= min_similarity]
    if not hits:
        return hits
    readable = await repo.readable_document_versions(sorted({h.doc_id for h in hits}), acl)
    return [h for h in hits if readable.get(h.doc_id) == h.version]


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
