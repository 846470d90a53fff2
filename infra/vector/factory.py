"""Build the configured ``VectorIndex``.

- ``KEEL_QDRANT_URL`` set: a Qdrant server through ``AsyncQdrantClient(url=...)``.
- otherwise the embedded default: a qdrant-edge shard (the Rust engine in this
  process) at ``KEEL_QDRANT_PATH`` or ``<data_dir>/qdrant``, in the sub-directory
  named after the collection. bench/retrieval.py shows why: qdrant-client local
  mode filters in Python and misses the goal "filtered p95 <= 1.5x unfiltered"
  by one to two orders of magnitude, while edge meets it.

The embedded store belongs to one process (its WAL is locked): the worker, which
indexes and searches; the API asks it (``KnowledgeQueryWorkflow``). Both engines'
client libraries are imported only when an index is built, so a process that never
builds one (the API) never loads them.
"""

from __future__ import annotations

from core.ports import VectorIndex
from infra.settings import Settings
from infra.vector import COLLECTION


def create_vector_index(settings: Settings, *, collection: str = COLLECTION) -> VectorIndex:
    """The vector index the settings describe (call ``ensure_collection`` before use)."""
    if settings.qdrant_url:
        from qdrant_client import AsyncQdrantClient

        from infra.vector.qdrant_index import QdrantIndex

        return QdrantIndex(AsyncQdrantClient(url=settings.qdrant_url), collection)
    from infra.vector.edge_index import EdgeIndex

    base = settings.qdrant_path or settings.data_dir / "qdrant"
    return EdgeIndex(base / collection)
