"""Retrieval quality on a small labelled public-domain set: dense, keyword and hybrid search.

The set (bench/data/retrieval/): two public-domain texts, the Constitution of
the United States with its amendments and chapters I-IV of Lewis Carroll's
Alice's Adventures in Wonderland, and ``labels.json``: 60 questions, each with
the passage(s) that answer it. Every document is split into passages with
``core.ingest.chunking.chunk_document`` (as a ``txt`` upload: paragraphs
packed up to 1,200 characters), embedded with the bundled all-MiniLM-L6-v2
(``LocalEmbedder``, as ingestion does) and indexed through the ``VectorIndex``
adapters with the payload ingestion writes; the documents are org-owned and
every query carries a plain user's real ACL filter (``acl_filter``), so every
passage is readable. For each engine it then asks every question three ways:

- ``dense``: ``search(vector, acl=..., top_k=10)`` (``query_text=None``);
- ``keyword``: the adapters cannot search by keywords alone, so this is the
  hybrid search's sparse leg on its own: the same query vector
  (``infra.vector.sparse_query``) against the same stored BM25 vectors
  (``sparse_document`` of title + text, IDF applied by the engine), with the
  same ACL filter, sent to the engine directly;
- ``hybrid``: ``search(vector, acl=..., top_k=10, query_text=question)``:
  dense and keyword legs fused with RRF.

Engines: ``edge`` (``EdgeIndex``, the embedded default) and ``qdrant-local``
(``QdrantIndex`` on ``AsyncQdrantClient(":memory:")``). It prints recall@10,
nDCG@10 (binary relevance), MRR@10 and hit@1 per engine and mode, the same per
document for edge, and the questions each edge mode misses. Nothing is asserted.

A passage is relevant when it contains one of the question's evidence spans
(whitespace-insensitive); ``labels.json`` also lists the resulting chunk
indexes, and ``--relabel`` rewrites them after a change of chunking.

    .venv/bin/python -m bench.retrieval_quality [--top-k 10] [--verbose] [--relabel]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel
from qdrant_client import AsyncQdrantClient, models
from qdrant_edge import EdgeShard, PayloadSelector, Query, QueryRequest, SparseVector

from core.ingest.chunking import DocType, SourceText, chunk_document
from core.models.knowledge import ChunkPayload, IndexPoint, ScoredChunk, point_id
from core.models.principal import Principal
from core.policy.acl import AclFilter, acl_filter
from core.ports import VectorIndex
from infra.embeddings import LocalEmbedder
from infra.vector import COLLECTION, RESULT_KEYS, SPARSE, sparse_query, to_scored_chunk
from infra.vector.edge_index import EdgeIndex, acl_to_edge
from infra.vector.qdrant_index import QdrantIndex, acl_to_qdrant

DATA = Path(__file__).resolve().parent / "data" / "retrieval"
LABELS = DATA / "labels.json"
KB_ID = "kb-bench-retrieval"
MODES = ("dense", "keyword", "hybrid")


# ---------------------------------------------------------------- the labelled set
class Chunking(BaseModel):
    doc_type: DocType
    max_chars: int
    overlap_chars: int


class DocumentEntry(BaseModel):
    id: str
    file: str
    title: str
    work: str
    source: str
    rights: str


class QuestionEntry(BaseModel):
    id: str
    document: str
    question: str
    evidence: list[str]
    relevant: list[int]


class LabelFile(BaseModel):
    description: str
    chunking: Chunking
    documents: list[DocumentEntry]
    questions: list[QuestionEntry]


@dataclass(frozen=True)
class Passage:
    doc_id: str
    index: int
    title: str
    text: str

    @property
    def key(self) -> str:
        return f"{self.doc_id}#{self.index}"


def _flat(text: str) -> str:
    return " ".join(text.split())


def load_passages(labels: LabelFile) -> list[Passage]:
    passages: list[Passage] = []
    cfg = labels.chunking
    for doc in labels.documents:
        text = (DATA / doc.file).read_text(encoding="utf-8")
        chunks = chunk_document(
            [SourceText(page=None, text=text)],
            doc_type=cfg.doc_type,
            max_chars=cfg.max_chars,
            overlap_chars=cfg.overlap_chars,
        )
        passages += [Passage(doc.id, c.index, doc.title, c.text) for c in chunks]
    return passages


def resolve(question: QuestionEntry, passages: Sequence[Passage]) -> list[int]:
    """Chunk indexes of the question's document that contain one of its evidence spans."""
    spans = [_flat(e) for e in question.evidence]
    found: list[int] = []
    for span in spans:
        hits = [p.index for p in passages if p.doc_id == question.document and span in _flat(p.text)]
        if not hits:
            raise SystemExit(f"labels.json: evidence of {question.id} is in no passage: {span!r}")
        found += hits
    return sorted(set(found))


def check_labels(labels: LabelFile, passages: Sequence[Passage]) -> list[str]:
    """Resolve every question's relevant passages from its evidence; warn where the file differs."""
    warnings = []
    doc_ids = {d.id for d in labels.documents}
    for q in labels.questions:
        if q.document not in doc_ids:
            raise SystemExit(f"labels.json: {q.id} names an unknown document {q.document!r}")
        resolved = resolve(q, passages)
        if resolved != q.relevant:
            warnings.append(f"{q.id}: labels.json lists passages {q.relevant}, the evidence is in {resolved}")
            q.relevant = resolved
    return warnings


def relabel() -> int:
    labels = LabelFile.model_validate_json(LABELS.read_text(encoding="utf-8"))
    passages = load_passages(labels)
    changes = check_labels(labels, passages)
    LABELS.write_text(json.dumps(labels.model_dump(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{LABELS}: {len(labels.questions)} questions, {len(changes)} changed")
    for line in changes:
        print(f"  {line}")
    return 0


# ---------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Scores:
    recall: float
    ndcg: float
    rr: float
    hit1: float


def score(ranked: Sequence[str], relevant: set[str], k: int) -> Scores:
    """recall@k, nDCG@k with binary gains, reciprocal rank (0 beyond k) and hit@1."""
    top = list(ranked)[:k]
    hits = [i for i, key in enumerate(top) if key in relevant]
    dcg = sum(1.0 / math.log2(i + 2) for i in hits)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return Scores(
        recall=len(hits) / len(relevant),
        ndcg=dcg / ideal,
        rr=1.0 / (hits[0] + 1) if hits else 0.0,
        hit1=1.0 if hits and hits[0] == 0 else 0.0,
    )


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# ---------------------------------------------------------------- runs
@dataclass
class ModeRun:
    engine: str
    mode: str
    ranked: dict[str, list[str]] = field(default_factory=dict)  # question id -> passage keys
    seconds: float = 0.0


Search = Callable[[QuestionEntry, list[float]], Awaitable[list[ScoredChunk]]]


def _keys(hits: Sequence[ScoredChunk]) -> list[str]:
    return [f"{h.doc_id}#{h.chunk_index}" for h in hits]


async def run_mode(
    engine: str,
    mode: str,
    questions: Sequence[QuestionEntry],
    vectors: dict[str, list[float]],
    search: Search,
) -> ModeRun:
    run = ModeRun(engine, mode)
    start = time.perf_counter()
    for q in questions:
        run.ranked[q.id] = _keys(await search(q, vectors[q.id]))
    run.seconds = time.perf_counter() - start
    return run


def adapter_modes(index: VectorIndex, acl: AclFilter, top_k: int) -> tuple[Search, Search]:
    async def dense(_q: QuestionEntry, vector: list[float]) -> list[ScoredChunk]:
        return await index.search(vector, acl=acl, top_k=top_k)

    async def hybrid(q: QuestionEntry, vector: list[float]) -> list[ScoredChunk]:
        return await index.search(vector, acl=acl, top_k=top_k, query_text=q.question)

    return dense, hybrid


def _points(passages: Sequence[Passage], vectors: Sequence[list[float]], strategy: str) -> list[IndexPoint]:
    return [
        IndexPoint(
            id=point_id(p.doc_id, p.index),
            vector=v,
            payload=ChunkPayload(
                doc_id=p.doc_id,
                kb_id=KB_ID,
                source="upload",
                owner_type="org",
                owner_id="org",
                visibility="private",
                shared_with=[],
                created_at="2025-01-01T00:00:00+00:00",
                doc_type="txt",
                chunk_index=p.index,
                title=p.title,
                text=p.text,
                page=None,
                strategy=strategy,
            ),
        )
        for p, v in zip(passages, vectors, strict=True)
    ]


async def run_edge(
    points: list[IndexPoint],
    questions: Sequence[QuestionEntry],
    vectors: dict[str, list[float]],
    acl: AclFilter,
    top_k: int,
) -> list[ModeRun]:
    with tempfile.TemporaryDirectory(prefix="keel-bench-rq-") as tmp:
        path = Path(tmp) / "qdrant"
        index = EdgeIndex(path)
        try:
            await index.ensure_collection(len(points[0].vector))
            await index.upsert(points)
            dense, hybrid = adapter_modes(index, acl, top_k)
            runs = [
                await run_mode("edge", "dense", questions, vectors, dense),
                await run_mode("edge", "hybrid", questions, vectors, hybrid),
            ]
        finally:
            await index.close()
        shard = EdgeShard.load(str(path))  # the engine itself, for the keyword leg alone
        try:
            flt, selector = acl_to_edge(acl), PayloadSelector.Include(RESULT_KEYS)

            async def keyword(q: QuestionEntry, _vector: list[float]) -> list[ScoredChunk]:
                indices, values = sparse_query(q.question)
                request = QueryRequest(
                    limit=top_k,
                    query=Query.Nearest(SparseVector(indices, values), using=SPARSE),
                    filter=flt,
                    with_payload=selector,
                )
                return [to_scored_chunk(h.id, h.score, h.payload) for h in shard.query(request)]

            runs.insert(1, await run_mode("edge", "keyword", questions, vectors, keyword))
        finally:
            shard.close()
    return runs


async def run_qdrant_local(
    points: list[IndexPoint],
    questions: Sequence[QuestionEntry],
    vectors: dict[str, list[float]],
    acl: AclFilter,
    top_k: int,
) -> list[ModeRun]:
    client = AsyncQdrantClient(":memory:")
    index = QdrantIndex(client, COLLECTION)
    try:
        await index.ensure_collection(len(points[0].vector))
        await index.upsert(points)
        dense, hybrid = adapter_modes(index, acl, top_k)
        flt = acl_to_qdrant(acl)

        async def keyword(q: QuestionEntry, _vector: list[float]) -> list[ScoredChunk]:
            indices, values = sparse_query(q.question)
            response = await client.query_points(
                COLLECTION,
                query=models.SparseVector(indices=indices, values=values),
                using=SPARSE,
                query_filter=flt,
                limit=top_k,
                with_payload=RESULT_KEYS,
            )
            return [to_scored_chunk(p.id, p.score, p.payload) for p in response.points]

        return [
            await run_mode("qdrant-local", "dense", questions, vectors, dense),
            await run_mode("qdrant-local", "keyword", questions, vectors, keyword),
            await run_mode("qdrant-local", "hybrid", questions, vectors, hybrid),
        ]
    finally:
        await index.close()


# ---------------------------------------------------------------- report
def _relevant(q: QuestionEntry) -> set[str]:
    return {f"{q.document}#{i}" for i in q.relevant}


def _row(label: str, run: ModeRun, questions: Sequence[QuestionEntry], top_k: int) -> str:
    scores = [score(run.ranked[q.id], _relevant(q), top_k) for q in questions]
    return (
        f"{label:<30} {len(questions):>3} {mean([s.recall for s in scores]):>9.3f} "
        f"{mean([s.ndcg for s in scores]):>8.3f} {mean([s.rr for s in scores]):>7.3f} "
        f"{mean([s.hit1 for s in scores]):>6.3f}"
    )


def _header(top_k: int) -> list[str]:
    header = (
        f"{'engine / mode':<30} {'n':>3} {f'recall@{top_k}':>9} {f'nDCG@{top_k}':>8} "
        f"{f'MRR@{top_k}':>7} {'hit@1':>6}"
    )
    return [header, "-" * len(header)]


def render(
    args: argparse.Namespace,
    labels: LabelFile,
    passages: Sequence[Passage],
    runs: list[ModeRun],
    warnings: list[str],
    timings: dict[str, float],
) -> str:
    k = args.top_k
    qs = labels.questions
    per_doc = {d.id: [q for q in qs if q.document == d.id] for d in labels.documents}
    counts = ", ".join(
        f"{d.id}: {sum(1 for p in passages if p.doc_id == d.id)} passages, {len(per_doc[d.id])} questions"
        for d in labels.documents
    )
    c = labels.chunking
    out = [
        "",
        f"Keel retrieval quality: {len(qs)} questions over {len(passages)} passages ({counts})",
        f"passages: chunk_document(doc_type={c.doc_type!r}, max_chars={c.max_chars}, "
        f"overlap_chars={c.overlap_chars}); embeddings: bundled all-MiniLM-L6-v2 (LocalEmbedder); "
        "ACL: org-owned documents, a plain user's acl_filter",
        f"keyword = the hybrid search's sparse leg alone (sparse_query against the stored BM25 vectors, "
        f"engine IDF, same ACL filter); hybrid = dense + keyword fused with RRF; top_k={k}",
        f"machine: os.cpu_count()={os.cpu_count()}  python {platform.python_version()}; "
        f"embedding {timings['embed_passages']:.1f} s for the passages, "
        f"{timings['embed_questions']:.1f} s for the questions",
        "",
        *_header(k),
    ]
    out += [_row(f"{r.engine} {r.mode}", r, qs, k) for r in runs]
    out += ["", "edge, per document:", *_header(k)]
    for doc_id, doc_qs in per_doc.items():
        out += [_row(f"{doc_id} {r.mode}", r, doc_qs, k) for r in runs if r.engine == "edge"]
    out += ["", *_agreement(runs, qs), "", f"edge: questions with no relevant passage in the top {k}:"]
    for r in runs:
        if r.engine != "edge":
            continue
        missed = [q.id for q in qs if score(r.ranked[q.id], _relevant(q), k).recall == 0]
        out.append(f"  {r.mode:<8} {len(missed):>2}: {' '.join(missed) or '-'}")
    if args.verbose:
        out += ["", "rank of the first relevant passage (edge; '-' = not in the top k):"]
        out.append(f"  {'id':<4} " + " ".join(f"{m:>7}" for m in MODES) + "  question")
        edge = {r.mode: r for r in runs if r.engine == "edge"}
        for q in qs:
            ranks = []
            for m in MODES:
                rel = _relevant(q)
                first = next((i + 1 for i, key in enumerate(edge[m].ranked[q.id]) if key in rel), None)
                ranks.append(f"{first if first else '-':>7}")
            out.append(f"  {q.id:<4} " + " ".join(ranks) + f"  {q.question}")
    if warnings:
        out += ["", f"labels.json is out of date for {len(warnings)} questions (run --relabel):", *warnings]
    return "\n".join(out)


def _agreement(runs: list[ModeRun], questions: Sequence[QuestionEntry]) -> list[str]:
    by = {(r.engine, r.mode): r for r in runs}
    lines = ["edge vs qdrant-local: identical top-k lists (same passages, same order)"]
    for mode in MODES:
        a, b = by.get(("edge", mode)), by.get(("qdrant-local", mode))
        if a is None or b is None:
            continue
        same = sum(1 for q in questions if a.ranked[q.id] == b.ranked[q.id])
        same_set = sum(1 for q in questions if set(a.ranked[q.id]) == set(b.ranked[q.id]))
        lines.append(f"  {mode:<8} {same}/{len(questions)} questions ({same_set} with the same set)")
    return lines


# ---------------------------------------------------------------- main
async def amain(args: argparse.Namespace) -> str:
    labels = LabelFile.model_validate_json(LABELS.read_text(encoding="utf-8"))
    passages = load_passages(labels)
    warnings = check_labels(labels, passages)
    strategy = chunk_document([SourceText(page=None, text="a\n\nb")], doc_type=labels.chunking.doc_type)[
        0
    ].strategy
    embedder = LocalEmbedder()
    await embedder.ensure_dimension()
    timings: dict[str, float] = {}
    print(f"  .. embedding {len(passages)} passages", file=sys.stderr, flush=True)
    start = time.perf_counter()
    passage_vectors = await embedder.embed_documents([p.text for p in passages])
    timings["embed_passages"] = time.perf_counter() - start
    start = time.perf_counter()
    vectors = {q.id: await embedder.embed_query(q.question) for q in labels.questions}
    timings["embed_questions"] = time.perf_counter() - start
    points = _points(passages, passage_vectors, strategy)
    acl = acl_filter(Principal(user_id="bench-reader"))
    print("  .. searching: edge, qdrant-local", file=sys.stderr, flush=True)
    runs = await run_edge(points, labels.questions, vectors, acl, args.top_k)
    runs += await run_qdrant_local(points, labels.questions, vectors, acl, args.top_k)
    return render(args, labels, passages, runs, warnings, timings)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = (__doc__ or "").split("\n\n")[0]
    p = argparse.ArgumentParser(prog="python -m bench.retrieval_quality", description=doc)
    p.add_argument("--top-k", type=int, default=10, help="results per question (default 10)")
    p.add_argument("--verbose", action="store_true", help="also print each question's first relevant rank")
    p.add_argument(
        "--relabel", action="store_true", help="rewrite labels.json's 'relevant' lists from the evidence"
    )
    args = p.parse_args(argv)
    if args.top_k < 1:
        p.error("--top-k must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.relabel:
        return relabel()
    print(asyncio.run(amain(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
