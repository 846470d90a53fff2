"""The knowledge-base services a process needs: embedder, vector index, blob store.

The embedded vector index (no ``KEEL_QDRANT_URL``) can be opened by one process
only, so ``keel dev`` runs the API and the workers in one process and hands the
same ``KnowledgeServices`` to both; with a Qdrant server every process opens
its own client. Nothing opens at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.ports import VectorIndex
from infra.blobstore import BlobStore, FilesystemBlobStore
from infra.embeddings import Embedder, create_embedder
from infra.settings import Settings
from infra.vector.factory import create_vector_index


@dataclass
class KnowledgeServices:
    embedder: Embedder
    index: VectorIndex
    blobs: BlobStore


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
