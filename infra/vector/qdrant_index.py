"""``VectorIndex`` over qdrant-client: a Qdrant server (``url=``) or local mode (``path=``/``":memory:"``).

Local mode is qdrant-client's pure-Python engine: it enforces filters but scans
every point in Python on each filtered query (slow beyond ~10k points, see
bench/retrieval.py), ignores payload indexes (creating them is harmless; the
warning is silenced), and runs synchronously inside the event loop. It is
exact (brute force), so tests may rely on complete results. One client per
``path`` (one process owns the store).

Hybrid search: two prefetch legs, dense and sparse keyword (see
``infra.vector`` for the sparse vectors), each carrying the ACL filter, fused
with Reciprocal Rank Fusion (``FusionQuery(fusion=Fusion.RRF)``, the engine's
default k = 2). The fusion stage only re-ranks what the legs returned, so the
outer query carries no filter of its own: the server would merge it into each
leg (the same conditions twice) and local mode would evaluate it a third time
over the whole collection (+50 % latency, measured). A fused hit's score is
RRF's (rank-based), so the query also fetches each hit's dense vector and every
hit carries its cosine ``similarity`` to the query, which a relevance floor reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from qdrant_client import AsyncQdrantClient, models

from core.models.knowledge import IndexPoint, ScoredChunk
from core.policy.acl import AclFilter, AclReader
from infra.vector import (
    DENSE,
    FILTERED_KEYS,
    RESULT_KEYS,
    SPARSE,
    acl_update,
    check_top_k,
    dense_similarity,
    prefetch_limit,
    sparse_document,
    sparse_query,
    to_scored_chunk,
)

UPSERT_BATCH = 256


def acl_to_qdrant(acl: AclFilter) -> models.Filter:
    """Translate the neutral ACL description into a qdrant-client filter.

    The result has only ``must`` clauses at its top level: the knowledge-base
    restriction, then one nested ``should`` filter of read alternatives per reader
    (the asker, then each audience member), so a chunk must be readable by all of
    them. Qdrant merges a propagated filter into a prefetch's own filter clause by
    clause, so a top-level ``should`` would be OR-ed with any other ``should`` -- a
    nested one is always AND-ed.
    """
    must: list[models.Condition] = []
    if acl.knowledge_base_ids is not None:
        kb_ids = list(acl.knowledge_base_ids)
        must.append(models.FieldCondition(key="kb_id", match=models.MatchAny(any=kb_ids)))
    must.extend(_readable_by(reader, include_org=acl.include_org) for reader in acl.readers)
    return models.Filter(must=must)


def _readable_by(reader: AclReader, *, include_org: bool) -> models.Filter:
    readable: list[models.Condition] = []
    if include_org:
        readable.append(models.FieldCondition(key="owner_type", match=models.MatchValue(value="org")))
    if reader.user_principal is not None:
        owner = models.MatchValue(value=reader.user_principal)
        readable.append(
            models.Filter(
                must=[  # owner_id first: it rarely matches, so evaluation stops early
                    models.FieldCondition(key="owner_id", match=owner),
                    models.FieldCondition(key="owner_type", match=models.MatchValue(value="user")),
                ]
            )
        )
    if reader.shared_principals:
        shared = list(reader.shared_principals)
        readable.append(models.FieldCondition(key="shared_with", match=models.MatchAny(any=shared)))
    if not readable:  # an empty ``should`` would match everything
        raise ValueError("this ACL matches nothing: check AclFilter.matches_nothing before searching")
    return models.Filter(should=readable)


def _doc_filter(doc_id: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])


class QdrantIndex:
    """The knowledge base's vector index on a Qdrant server or qdrant-client local mode."""

    def __init__(self, client: AsyncQdrantClient, collection: str) -> None:
        self._client = client
        self._collection = collection

    async def ensure_collection(self, dimension: int) -> None:
        if dimension < 1:
            raise ValueError("dimension must be >= 1")
        if await self._client.collection_exists(self._collection):
            info = await self._client.get_collection(self._collection)
            vectors = info.config.params.vectors
            existing = vectors.get(DENSE) if isinstance(vectors, dict) else None
            if existing is None or existing.size != dimension:
                found = existing.size if existing is not None else None
                raise ValueError(
                    f"collection {self._collection!r} exists with dense size {found}, not {dimension}"
                )
        else:
            await self._client.create_collection(
                self._collection,
                vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for key in FILTERED_KEYS:  # idempotent on a server; ignored by local mode
                await self._client.create_payload_index(
                    self._collection, key, models.PayloadSchemaType.KEYWORD, wait=True
                )

    async def upsert(self, points: Sequence[IndexPoint]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [_point_struct(p) for p in points[start : start + UPSERT_BATCH]]
            await self._client.upsert(self._collection, batch, wait=True)

    async def delete_document(self, doc_id: str) -> None:
        await self._client.delete(
            self._collection, points_selector=models.FilterSelector(filter=_doc_filter(doc_id)), wait=True
        )

    async def set_document_acl(self, doc_id: str, *, shared_with: list[str], visibility: str) -> None:
        await self._client.set_payload(
            self._collection,
            payload=acl_update(shared_with, visibility),
            points=_doc_filter(doc_id),
            wait=True,
        )

    async def search(
        self,
        vector: Sequence[float],
        *,
        acl: AclFilter,
        top_k: int,
        query_text: str | None = None,
    ) -> list[ScoredChunk]:
        check_top_k(top_k)
        if acl.matches_nothing:
            return []
        flt = acl_to_qdrant(acl)
        dense = [float(x) for x in vector]
        indices, values = sparse_query(query_text) if query_text else ([], [])
        if indices:
            limit = prefetch_limit(top_k)
            response = await self._client.query_points(
                self._collection,
                prefetch=[
                    models.Prefetch(query=dense, using=DENSE, filter=flt, limit=limit),
                    models.Prefetch(
                        query=models.SparseVector(indices=indices, values=values),
                        using=SPARSE,
                        filter=flt,
                        limit=limit,
                    ),
                ],
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                limit=top_k,
                with_payload=RESULT_KEYS,
                with_vectors=[DENSE],  # for each hit's dense similarity (RRF's score is rank-based)
            )
            return [
                to_scored_chunk(p.id, p.score, p.payload, similarity=dense_similarity(dense, p.vector))
                for p in response.points
            ]
        response = await self._client.query_points(
            self._collection,
            query=dense,
            using=DENSE,
            query_filter=flt,
            limit=top_k,
            with_payload=RESULT_KEYS,
        )
        return [to_scored_chunk(p.id, p.score, p.payload, similarity=p.score) for p in response.points]

    async def count(self, doc_id: str | None = None) -> int:
        result = await self._client.count(
            self._collection, count_filter=_doc_filter(doc_id) if doc_id is not None else None, exact=True
        )
        return result.count

    async def close(self) -> None:
        await self._client.close()


def _point_struct(point: IndexPoint) -> models.PointStruct:
    vectors: dict[str, models.Vector] = {DENSE: point.vector}
    indices, values = sparse_document(f"{point.payload.title}\n{point.payload.text}")
    if indices:
        vectors[SPARSE] = models.SparseVector(indices=indices, values=values)
    return models.PointStruct(id=point.id, vector=vectors, payload=point.payload.model_dump(mode="json"))
