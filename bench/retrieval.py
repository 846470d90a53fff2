"""Filtered vs unfiltered vector-search latency for the embedded engines.

For each store size (default 10k and 50k chunks, 384-dim clustered unit
vectors) and each engine it loads the store through the ``VectorIndex``
adapter, then times the same query vectors

- unfiltered (no filter: the engine's floor), and
- filtered by the real ACL filter (``acl_filter`` -> ``acl_to_qdrant`` /
  ``acl_to_edge``) of a principal who may read 1 %, 10 % or 90 % of the chunks,

interleaved query by query, both as raw engine calls with the same limit and
payload selection, and prints p50/p95 and the ratio filtered/unfiltered p95
against the goal 1.5x. ``adapter p50`` is the full ``VectorIndex.search`` path
(thread hop, lock, result models) for the filtered query.

Engines:
- ``local``: qdrant-client local mode (``AsyncQdrantClient(":memory:")``), the
  pure-Python engine; its filtered queries scan every point in Python, so it
  gets fewer queries (``--local-queries``).
- ``edge-plain``: qdrant-edge-py with ``EdgeIndex(optimize_every=None)``: every
  point stays in appendable segments, searched exhaustively with payload indexes.
- ``edge``: ``EdgeIndex`` with its defaults, as the factory builds it: the
  optimiser runs once 10,000 points have been written, so from 10k chunks on
  the store has HNSW indexes.

``recall`` is the filtered top-k's overlap with an exact filtered search
(``SearchParams(exact=True)``) on the same store, ``unf rec`` the same for the
unfiltered query; local mode is always exact. The synthetic vectors (64 noisy
clusters) are a hard case for HNSW; real embeddings usually recall better.

Not covered: retrieval quality (recall@10 / nDCG@10 for dense, keyword and
hybrid on a labelled public-domain set) needs the embedding model, which this
benchmark does not load.

    .venv/bin/python -m bench.retrieval [--points 10000,50000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/retrieval.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from qdrant_client import AsyncQdrantClient
from qdrant_edge import EdgeShard, PayloadSelector, Query, QueryRequest, SearchParams

from core.models.knowledge import ChunkPayload, IndexPoint, point_id
from core.models.principal import Principal
from core.policy.acl import AclFilter, acl_filter
from core.ports import VectorIndex
from infra.vector import DENSE, RESULT_KEYS
from infra.vector.edge_index import HNSW_EF, EdgeIndex, acl_to_edge
from infra.vector.qdrant_index import QdrantIndex, acl_to_qdrant

SELECTIVITIES = (0.01, 0.10, 0.90)
GOAL = 1.5
WORDS = [f"term{i}" for i in range(500)]


@dataclass
class Row:
    engine: str
    points: int
    selectivity: float
    unfiltered: list[float]
    filtered: list[float]
    adapter: list[float]
    hits: float  # mean number of results of the filtered query
    recall: float | None = None  # mean overlap of the filtered top-k with the exact one
    unfiltered_recall: float | None = None


def pct(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def make_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    vecs = centres[rng.integers(0, 64, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    unit: np.ndarray = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    return unit


def make_points(n: int, dim: int, seed: int) -> list[IndexPoint]:
    """Chunks owned by other users; chunk i is shared with group ``sel<p>`` iff r_i < p."""
    rng = np.random.default_rng(seed)
    vecs = make_vectors(n, dim, rng)
    draws = rng.random(n)
    points = []
    for i in range(n):
        doc = f"doc-{i // 4:06d}"
        shared = [f"group:sel{round(s * 100)}" for s in SELECTIVITIES if draws[i] < s]
        payload = ChunkPayload(
            doc_id=doc,
            kb_id=f"kb{i % 5}",
            source="upload",
            owner_type="user",
            owner_id=f"user:owner{i % 100}",
            visibility="shared" if shared else "private",
            shared_with=shared,
            created_at="2025-06-11T12:00:00+00:00",
            doc_type="pdf",
            chunk_index=i % 4,
            title=f"Document {i // 4}",
            text=" ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 40)),
            page=1,
            strategy="fixed",
        )
        points.append(IndexPoint(id=point_id(doc, i % 4), vector=vecs[i].tolist(), payload=payload))
    return points


def acl_for(selectivity: float) -> AclFilter:
    return acl_filter(Principal(user_id="bench", groups=(f"sel{round(selectivity * 100)}",)))


async def timed(fn: Callable[..., Awaitable[int]], *args: Any) -> tuple[float, int]:
    start = time.perf_counter()
    result = await fn(*args)
    return (time.perf_counter() - start) * 1000.0, result


Search = Callable[[list[float], AclFilter | None], Awaitable[int]]
ExactIds = Callable[[list[float], AclFilter | None, bool], set[str]]


def mean_recall(queries: np.ndarray, ids: ExactIds, acl: AclFilter | None) -> float:
    overlaps = []
    for q in queries:
        exact = ids(q.tolist(), acl, True)
        got = ids(q.tolist(), acl, False)
        overlaps.append(len(exact & got) / len(exact) if exact else 1.0)
    return float(np.mean(overlaps))


async def measure_raw(
    engine: str, n: int, queries: np.ndarray, raw: Search, ids: ExactIds | None = None
) -> list[Row]:
    """Unfiltered and filtered raw engine queries, interleaved query by query."""
    rows = {s: Row(engine, n, s, [], [], [], 0.0) for s in SELECTIVITIES}
    unfiltered: list[float] = []
    for q in queries[:3]:  # warm-up
        await raw(q.tolist(), None)
        await raw(q.tolist(), acl_for(SELECTIVITIES[0]))
    for q in queries:
        vec = q.tolist()
        ms, _ = await timed(raw, vec, None)
        unfiltered.append(ms)
        for s in SELECTIVITIES:
            ms, hits = await timed(raw, vec, acl_for(s))
            rows[s].filtered.append(ms)
            rows[s].hits += hits / len(queries)
    unfiltered_recall = mean_recall(queries, ids, None) if ids is not None else None
    for row in rows.values():
        row.unfiltered = unfiltered
        if ids is not None:
            row.recall = mean_recall(queries, ids, acl_for(row.selectivity))
            row.unfiltered_recall = unfiltered_recall
    return list(rows.values())


async def measure_adapter(rows: list[Row], queries: np.ndarray, index: VectorIndex, top_k: int) -> None:
    """The full ``VectorIndex.search`` path for each filtered row."""

    async def search(vec: list[float], acl: AclFilter) -> int:
        return len(await index.search(vec, acl=acl, top_k=top_k))

    for q in queries:
        for row in rows:
            ms, _ = await timed(search, q.tolist(), acl_for(row.selectivity))
            row.adapter.append(ms)


async def bench_local(points: list[IndexPoint], queries: np.ndarray, top_k: int) -> list[Row]:
    client = AsyncQdrantClient(":memory:")
    index = QdrantIndex(client, "keel_chunks")
    await index.ensure_collection(len(points[0].vector))
    start = time.perf_counter()
    await index.upsert(points)
    print(f"  local: loaded {len(points)} points in {time.perf_counter() - start:.1f} s", flush=True)

    async def raw(vec: list[float], acl: AclFilter | None) -> int:
        response = await client.query_points(
            "keel_chunks",
            query=vec,
            using=DENSE,
            query_filter=acl_to_qdrant(acl) if acl is not None else None,
            limit=top_k,
            with_payload=RESULT_KEYS,
        )
        return len(response.points)

    try:
        rows = await measure_raw("local", len(points), queries, raw)
        await measure_adapter(rows, queries[:3], index, top_k)  # seconds a query: three suffice
        return rows
    finally:
        await index.close()


async def bench_edge(points: list[IndexPoint], queries: np.ndarray, top_k: int, plain: bool) -> list[Row]:
    name = "edge-plain" if plain else "edge"
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        path = Path(tmp) / "keel_chunks"
        index = EdgeIndex(path, optimize_every=None) if plain else EdgeIndex(path)
        await index.ensure_collection(len(points[0].vector))
        start = time.perf_counter()
        await index.upsert(points)
        print(f"  {name}: loaded {len(points)} points in {time.perf_counter() - start:.1f} s", flush=True)
        await index.close()
        shard = EdgeShard.load(str(path))  # the raw engine, for the baseline
        selector = PayloadSelector.Include(RESULT_KEYS)

        async def raw(vec: list[float], acl: AclFilter | None) -> int:
            request = QueryRequest(
                limit=top_k,
                query=Query.Nearest(vec, using=DENSE),
                filter=acl_to_edge(acl) if acl is not None else None,
                with_payload=selector,
                params=SearchParams(hnsw_ef=HNSW_EF),  # as EdgeIndex.search
            )
            return len(shard.query(request))  # in-process, synchronous: no thread hop

        def ids(vec: list[float], acl: AclFilter | None, exact: bool) -> set[str]:
            request = QueryRequest(
                limit=top_k,
                query=Query.Nearest(vec, using=DENSE),
                filter=acl_to_edge(acl) if acl is not None else None,
                params=SearchParams(exact=True) if exact else SearchParams(hnsw_ef=HNSW_EF),
            )
            return {str(p.id) for p in shard.query(request)}

        try:
            rows = await measure_raw(name, len(points), queries, raw, ids)
        finally:
            shard.close()
        reopened = EdgeIndex(path)  # the adapter path, on the same data
        try:
            await measure_adapter(rows, queries, reopened, top_k)
        finally:
            await reopened.close()
        return rows


def _recall(value: float | None) -> str:
    return "exact" if value is None else f"{value:.3f}"


def print_table(rows: list[Row], top_k: int) -> None:
    header = (
        f"{'engine':<10} {'points':>7} {'sel':>5} {'hits':>5} | {'unfilt p50':>10} {'p95':>8} | "
        f"{'filt p50':>9} {'p95':>8} | {'p95 ratio':>9} {'goal':>5} | "
        f"{'adapter p50':>11} {'recall':>6} {'unf rec':>7}"
    )
    print(f"\nlatency in ms, top_k={top_k}, goal: filtered p95 <= {GOAL}x unfiltered p95")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = pct(r.filtered, 95) / pct(r.unfiltered, 95)
        ok = "yes" if ratio <= GOAL else "NO"
        print(
            f"{r.engine:<10} {r.points:>7} {r.selectivity:>5.0%} {r.hits:>5.1f} | "
            f"{pct(r.unfiltered, 50):>10.2f} {pct(r.unfiltered, 95):>8.2f} | "
            f"{pct(r.filtered, 50):>9.2f} {pct(r.filtered, 95):>8.2f} | {ratio:>8.2f}x {ok:>5} | "
            f"{pct(r.adapter, 50):>11.2f} {_recall(r.recall):>6} {_recall(r.unfiltered_recall):>7}"
        )


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--points", default="10000,50000", help="comma-separated store sizes")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200, help="query vectors per size (edge)")
    parser.add_argument("--local-queries", type=int, default=10, help="query vectors per size (local mode)")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--engines", default="local,edge-plain,edge")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} at start; dim {args.dim}"
    )
    rows: list[Row] = []
    for n in (int(x) for x in args.points.split(",")):
        print(f"building {n} points ...", flush=True)
        points = make_points(n, args.dim, args.seed)
        qrng = np.random.default_rng(args.seed + 1)
        queries = make_vectors(max(args.queries, args.local_queries), args.dim, qrng)
        if "local" in engines:
            rows += await bench_local(points, queries[: args.local_queries], args.top_k)
        if "edge-plain" in engines:
            rows += await bench_edge(points, queries[: args.queries], args.top_k, plain=True)
        if "edge" in engines:
            rows += await bench_edge(points, queries[: args.queries], args.top_k, plain=False)
    print_table(rows, args.top_k)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average {load[0]:.2f} at end")
    print(
        "retrieval quality (recall@10, nDCG@10 for dense/keyword/hybrid): skipped, needs the embedding model"
    )


if __name__ == "__main__":
    asyncio.run(main())
