"""Ports: the interfaces core-facing code depends on; adapters live in ``infra``.

Pure (stdlib + pydantic). Adapters for :class:`VectorIndex` are in
``infra/vector`` (``QdrantIndex`` for a Qdrant server or qdrant-client local
mode, ``EdgeIndex`` for the embedded qdrant-edge engine); build one with
``infra.vector.factory.create_vector_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from core.models.knowledge import IndexPoint, ScoredChunk
from core.policy.acl import AclFilter

__all__ = ["IndexPoint", "ScoredChunk", "VectorIndex"]


@runtime_checkable
class VectorIndex(Protocol):
    """The knowledge base's vector store.

    Every read takes an :class:`AclFilter` (from ``core.policy.acl.acl_filter``)
    and applies it inside the engine, on every leg of the query: there is no
    unfiltered search.
    """

    async def ensure_collection(self, dimension: int) -> None:
        """Create the collection (dense ``dimension``, cosine; sparse keywords) and payload
        indexes if missing; raise ``ValueError`` if it exists with another dimension."""
        ...

    async def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Insert or overwrite points (ids from ``point_id`` make re-indexing idempotent).
        Visible to the next search when this returns."""
        ...

    async def delete_document(self, doc_id: str) -> None:
        """Remove every chunk of ``doc_id`` (a no-op when there is none)."""
        ...

    async def set_document_acl(self, doc_id: str, *, shared_with: list[str], visibility: str) -> None:
        """Replace ``shared_with`` and ``visibility`` on every chunk of ``doc_id`` (no re-embedding)."""
        ...

    async def search(
        self,
        vector: Sequence[float],
        *,
        acl: AclFilter,
        top_k: int,
        query_text: str | None = None,
    ) -> list[ScoredChunk]:
        """The ``top_k`` best chunks the ACL allows; dense + keyword fused (RRF) when
        ``query_text`` is given and the engine supports it, dense only otherwise."""
        ...

    async def count(self, doc_id: str | None = None) -> int:
        """Exact number of points (of ``doc_id`` when given)."""
        ...

    async def close(self) -> None:
        """Release the engine (flushes embedded stores)."""
        ...
