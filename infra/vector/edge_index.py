"""``VectorIndex`` over qdrant-edge-py: Qdrant's Rust engine embedded in this process.

One shard per directory (``path``); one process owns it (a second open fails on
the WAL lock). The engine's API is synchronous, so every call runs in a worker
thread (``asyncio.to_thread``) under one lock, which serialises calls into the
shard. Measured with 0.9.0: the binding keeps the GIL for the whole call, so a
query (1-20 ms) or an optimisation still pauses the event loop for its duration.

Payload indexes (keyword) exist on every filtered key, so filtered queries use
them. New points land in appendable segments that are searched exhaustively
(exact): fast while small, but at 50k chunks a filter that admits 90 % of them
costs ~1.8x an unfiltered query (bench/retrieval.py). HNSW indexes are built by
the engine's optimiser, which edge runs only when asked: :meth:`EdgeIndex.optimize`,
called automatically inside ``upsert`` once ``optimize_every`` points have been
written since the last run (default 10,000; ``None`` turns it off). With HNSW,
filtered p95 stays within 1.5x of unfiltered at 10k and 50k chunks. An
optimisation pauses the process (GIL held): ~8 s for 10-20k 384-dim points on
two busy cores, ~90 s for a first build over 50k; segments below the engine's
indexing threshold (~6.5k such points) are left as they are.

Hybrid search is native: dense and sparse-keyword prefetch legs, each carrying
the ACL filter, fused with RRF (``Fusion.Rrf(k=2)``,
the same k as qdrant-client's default); the fusion only re-ranks what the legs
returned, so the outer query needs no filter of its own. RRF's score is
rank-based, so the query also returns each hit's dense vector and every hit
carries its cosine ``similarity`` to the query (what a relevance floor reads). The sparse
vectors are the Python BM25 of ``infra.vector`` (identical in both adapters);
edge's own ``Bm25`` embedder is not used.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    Fusion,
    MatchAny,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    PayloadSelector,
    Point,
    Prefetch,
    Query,
    QueryRequest,
    SearchParams,
    SparseVector,
    UpdateOperation,
)

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

if TYPE_CHECKING:
    from qdrant_edge import ConditionType  # a Union defined in the type stub only

T = TypeVar("T")

UPSERT_BATCH = 1024
RRF_K = 2
#: HNSW beam width at query time (ignored by exhaustively searched segments). The engine's
#: default (ef_construct, 100) gave recall@10 0.69 on bench/retrieval.py's synthetic 384-dim
#: vectors; 256 gave 0.90 for ~+0.2 ms. Real embeddings are usually easier than that data.
HNSW_EF = 256
_CONFIG_FILE = "edge_config.json"


def acl_to_edge(acl: AclFilter) -> Filter:
    """Translate the neutral ACL description into a qdrant-edge filter.

    Same shape as ``acl_to_qdrant``: only ``must`` clauses at the top level -- the
    knowledge-base restriction, then one nested ``should`` of read alternatives per
    reader (the asker, then each audience member), so a chunk must be readable by
    all of them; a merged filter can only narrow it.
    """
    must: list[ConditionType] = []
    if acl.knowledge_base_ids is not None:
        must.append(FieldCondition("kb_id", match=MatchAny(list(acl.knowledge_base_ids))))
    must.extend(_readable_by(reader, include_org=acl.include_org) for reader in acl.readers)
    return Filter(must=must)


def _readable_by(reader: AclReader, *, include_org: bool) -> Filter:
    readable: list[ConditionType] = []
    if include_org:
        readable.append(FieldCondition("owner_type", match=MatchValue("org")))
    if reader.user_principal is not None:
        readable.append(
            Filter(
                must=[
                    FieldCondition("owner_id", match=MatchValue(reader.user_principal)),
                    FieldCondition("owner_type", match=MatchValue("user")),
                ]
            )
        )
    if reader.shared_principals:
        readable.append(FieldCondition("shared_with", match=MatchAny(list(reader.shared_principals))))
    if not readable:  # an empty ``should`` would match everything
        raise ValueError("this ACL matches nothing: check AclFilter.matches_nothing before searching")
    return Filter(should=readable)


def _doc_filter(doc_id: str) -> Filter:
    return Filter(must=[FieldCondition("doc_id", match=MatchValue(doc_id))])


def _config(dimension: int) -> EdgeConfig:
    return EdgeConfig(
        vectors={DENSE: EdgeVectorParams(size=dimension, distance=Distance.Cosine)},
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
    )


class EdgeIndex:
    """The knowledge base's vector index in an embedded qdrant-edge shard at ``path``."""

    def __init__(self, path: Path | str, *, optimize_every: int | None = 10_000) -> None:
        if optimize_every is not None and optimize_every < 1:
            raise ValueError("optimize_every must be >= 1 or None")
        self._path = Path(path)
        self._optimize_every = optimize_every
        self._written = 0  # points upserted since the last optimisation (this process)
        self._shard: EdgeShard | None = None
        self._dimension: int | None = None  # known once ensure_collection() ran
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def _run(self, fn: Callable[[EdgeShard], T]) -> T:
        def call() -> T:
            with self._lock:
                return fn(self._open_locked())

        return await asyncio.to_thread(call)

    def _open_locked(self) -> EdgeShard:
        if self._shard is None:
            if not (self._path / _CONFIG_FILE).exists():
                raise RuntimeError(f"no vector index at {self._path}: call ensure_collection() first")
            self._shard = EdgeShard.load(str(self._path))
        return self._shard

    async def ensure_collection(self, dimension: int) -> None:
        if dimension < 1:
            raise ValueError("dimension must be >= 1")

        def open_or_create() -> None:
            with self._lock:
                if self._shard is not None and self._dimension == dimension:
                    shard = self._shard
                else:
                    if self._shard is not None:  # opened lazily or for another size: reopen and check
                        self._shard.close()
                        self._shard = None
                    shard = self._load_or_create_locked(dimension)
                    self._shard, self._dimension = shard, dimension
                for key in FILTERED_KEYS:  # idempotent
                    shard.update(UpdateOperation.create_field_index(key, PayloadSchemaType.Keyword))

        await asyncio.to_thread(open_or_create)

    def _load_or_create_locked(self, dimension: int) -> EdgeShard:
        config = _config(dimension)
        if not (self._path / _CONFIG_FILE).exists():
            self._path.mkdir(parents=True, exist_ok=True)
            return EdgeShard.create(str(self._path), config)
        try:
            return EdgeShard.load(str(self._path), config)  # validates the stored vector sizes
        except Exception as exc:
            if "incompatible" in str(exc).lower():
                raise ValueError(f"vector index at {self._path}: {exc}") from exc
            raise

    async def upsert(self, points: Sequence[IndexPoint]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):  # points are converted in the worker thread
            await self._run(partial(_upsert, points=points[start : start + UPSERT_BATCH]))
        self._written += len(points)
        if self._optimize_every is not None and self._written >= self._optimize_every:
            await self.optimize()

    async def delete_document(self, doc_id: str) -> None:
        op = UpdateOperation.delete_points_by_filter(_doc_filter(doc_id))
        await self._run(partial(_update, op=op))

    async def set_document_acl(self, doc_id: str, *, shared_with: list[str], visibility: str) -> None:
        op = UpdateOperation.set_payload_by_filter(_doc_filter(doc_id), acl_update(shared_with, visibility))
        await self._run(partial(_update, op=op))

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
        dense = [float(x) for x in vector]
        request = _search_request(dense, acl, top_k, query_text)
        hits = await self._run(lambda shard: shard.query(request))
        if request.prefetches:  # fused: the score is RRF's; the similarity comes from the vector
            return [
                to_scored_chunk(h.id, h.score, h.payload, similarity=dense_similarity(dense, h.vector))
                for h in hits
            ]
        return [to_scored_chunk(h.id, h.score, h.payload, similarity=h.score) for h in hits]

    async def count(self, doc_id: str | None = None) -> int:
        request = CountRequest(exact=True, filter=_doc_filter(doc_id) if doc_id is not None else None)
        return await self._run(lambda shard: shard.count(request))

    async def optimize(self) -> bool:
        """Run the engine's optimiser now (builds HNSW, merges segments); True if it changed
        anything. Pauses the process while it runs (see the module docstring). Not part of the port."""
        self._written = 0
        return await self._run(lambda shard: shard.optimize())

    async def close(self) -> None:
        def close_locked() -> None:
            with self._lock:
                if self._shard is not None:
                    self._shard.flush()
                    self._shard.close()
                    self._shard, self._dimension = None, None

        await asyncio.to_thread(close_locked)


def _update(shard: EdgeShard, *, op: UpdateOperation) -> None:
    shard.update(op)


def _upsert(shard: EdgeShard, *, points: Sequence[IndexPoint]) -> None:
    shard.update(UpdateOperation.upsert_points([_edge_point(p) for p in points]))


def _search_request(dense: list[float], acl: AclFilter, top_k: int, query_text: str | None) -> QueryRequest:
    flt = acl_to_edge(acl)
    payload = PayloadSelector.Include(RESULT_KEYS)
    params = SearchParams(hnsw_ef=HNSW_EF)
    indices, values = sparse_query(query_text) if query_text else ([], [])
    if not indices:
        return QueryRequest(
            limit=top_k,
            query=Query.Nearest(dense, using=DENSE),
            filter=flt,
            with_payload=payload,
            params=params,
        )
    limit = prefetch_limit(top_k)
    return QueryRequest(
        limit=top_k,
        prefetches=[
            Prefetch(limit=limit, query=Query.Nearest(dense, using=DENSE), filter=flt, params=params),
            Prefetch(
                limit=limit, query=Query.Nearest(SparseVector(indices, values), using=SPARSE), filter=flt
            ),
        ],
        query=Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub lists Fusion, not its Rrf variant
        with_payload=payload,
        with_vector=[DENSE],  # for each hit's dense similarity (RRF's score is rank-based)
    )


def _edge_point(point: IndexPoint) -> Point:
    vectors: dict[str, list[float] | SparseVector | list[list[float]]] = {DENSE: point.vector}
    indices, values = sparse_document(f"{point.payload.title}\n{point.payload.text}")
    if indices:
        vectors[SPARSE] = SparseVector(indices, values)
    return Point(point.id, vectors, point.payload.model_dump(mode="json"))
