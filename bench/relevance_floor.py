"""Calibrates ``KEEL_RETRIEVAL_MIN_SCORE``, the relevance floor of chat citations.

Chat cites a passage only when its dense cosine similarity to the message reaches
the floor (``infra.knowledge.search_readable(min_similarity=...)``); the hybrid
search's fused RRF score is rank-based (every query has a "best" passage, a
greeting too), so it cannot be the floor. This bench measures the similarity
that decides it, on the labelled set of ``bench.retrieval_quality`` (two
public-domain texts in bench/data/retrieval/, 60 questions with their relevant
passages), chunked as a ``txt`` upload, embedded with the bundled
all-MiniLM-L6-v2 and searched the way chat searches: hybrid (dense + keyword, RRF)
through ``EdgeIndex`` with a user's ACL filter, top 10.

It prints three distributions of ``ScoredChunk.similarity`` over those hits:

- relevant: (question, relevant passage) pairs among each question's hits;
- unrelated to on-topic questions: the other passages those questions found;
- off-topic messages: every hit of greetings and questions about nothing in the
  set ("Hello!", "thanks", "what's the weather tomorrow?"), which should cite nothing;

then, for candidate floors, the share of questions that keep at least one
relevant citation and of off-topic messages that cite anything, and the chosen
floor: the highest step of 0.05 at which at least 90 % of the questions keep a
relevant citation, with the off-topic messages that would still cite something
there. Nothing is asserted.

    .venv/bin/python -m bench.relevance_floor [--top-k 10]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.retrieval_quality import LABELS, LabelFile, _points, check_labels, load_passages
from core.models.knowledge import ScoredChunk
from core.models.principal import Principal
from core.policy.acl import acl_filter
from infra.embeddings import LocalEmbedder
from infra.vector.edge_index import EdgeIndex

OFF_TOPIC = [
    "Hello!",
    "hi",
    "Hey there, how are you?",
    "Good morning!",
    "Thanks!",
    "thank you, that helps",
    "ok",
    "Bye, see you tomorrow",
    "Can you help me?",
    "What can you do?",
    "What's the weather tomorrow?",
    "Write me a short poem about autumn.",
    "What is 17 times 23?",
    "Tell me a joke.",
    "Translate 'good night' into French.",
    "Which laptop should I buy for programming?",
    "How do I reset my VPN password?",
    "Summarise this email for me.",
    "What time is it in Tokyo?",
    "Recommend a good pizza place nearby.",
]
STEP = 0.05


def quantiles(values: Sequence[float]) -> str:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    return (
        f"n={len(ordered):4d}  min {ordered[0]:.3f}  p5 {q(0.05):.3f}  p25 {q(0.25):.3f}  "
        f"median {q(0.5):.3f}  p75 {q(0.75):.3f}  p95 {q(0.95):.3f}  max {ordered[-1]:.3f}"
    )


def similarity(hit: ScoredChunk) -> float:
    assert hit.similarity is not None  # both adapters set it on every hit
    return hit.similarity


async def measure(top_k: int) -> int:
    labels = LabelFile.model_validate_json(LABELS.read_text(encoding="utf-8"))
    passages = load_passages(labels)
    for warning in check_labels(labels, passages):
        print(f"  labels: {warning}", file=sys.stderr)
    embedder = LocalEmbedder()
    await embedder.ensure_dimension()
    print(f"  .. embedding {len(passages)} passages", file=sys.stderr, flush=True)
    vectors = await embedder.embed_documents([p.text for p in passages])
    points = _points(passages, vectors, "paragraph")
    acl = acl_filter(Principal(user_id="bench-reader"))

    relevant: list[float] = []
    unrelated: list[float] = []
    best_relevant: list[float] = []  # per question: its best relevant hit (0 when none in the top k)
    off_topic_best: list[float] = []
    off_topic_all: list[float] = []
    with tempfile.TemporaryDirectory(prefix="keel-bench-floor-") as tmp:
        index = EdgeIndex(Path(tmp) / "qdrant")
        try:
            await index.ensure_collection(len(points[0].vector))
            await index.upsert(points)
            for q in labels.questions:
                keys = {f"{q.document}#{i}" for i in q.relevant}
                vector = await embedder.embed_query(q.question)
                hits = await index.search(vector, acl=acl, top_k=top_k, query_text=q.question)
                mine = [similarity(h) for h in hits if f"{h.doc_id}#{h.chunk_index}" in keys]
                relevant += mine
                unrelated += [similarity(h) for h in hits if f"{h.doc_id}#{h.chunk_index}" not in keys]
                best_relevant.append(max(mine, default=0.0))
            for message in OFF_TOPIC:
                vector = await embedder.embed_query(message)
                hits = await index.search(vector, acl=acl, top_k=top_k, query_text=message)
                sims = [similarity(h) for h in hits]
                off_topic_all += sims
                off_topic_best.append(max(sims, default=0.0))
        finally:
            await index.close()
    await embedder.aclose()

    print(
        f"relevance floor: {len(passages)} passages, {len(labels.questions)} questions, "
        f"{len(OFF_TOPIC)} off-topic messages, hybrid (RRF) top {top_k}, all-MiniLM-L6-v2, edge"
    )
    print("dense cosine similarity of the hits:")
    print(f"  relevant pairs                      {quantiles(relevant)}")
    print(f"  best relevant hit per question      {quantiles(best_relevant)}")
    print(f"  unrelated hits of on-topic questions {quantiles(unrelated)}")
    print(f"  hits of off-topic messages          {quantiles(off_topic_all)}")
    print(f"  best hit per off-topic message      {quantiles(off_topic_best)}")
    print("floor  questions keeping a relevant citation  off-topic citing anything  relevant pairs kept")
    for step in range(2, 12):
        floor = round(step * STEP, 2)
        kept = sum(b >= floor for b in best_relevant) / len(best_relevant)
        cite = sum(b >= floor for b in off_topic_best) / len(off_topic_best)
        pairs = sum(s >= floor for s in relevant) / len(relevant)
        print(f"{floor:5.2f}  {kept:41.0%}  {cite:25.0%}  {pairs:19.0%}")
    floors = [round(step * STEP, 2) for step in range(1, int(1 / STEP))]
    chosen = max(f for f in floors if sum(b >= f for b in best_relevant) >= 0.9 * len(best_relevant))
    kept = sum(b >= chosen for b in best_relevant) / len(best_relevant)
    print(f"chosen floor: {chosen:.2f} ({kept:.0%} of the questions keep a relevant citation)")
    for message, best in zip(OFF_TOPIC, off_topic_best, strict=True):
        print(f"  {'CITES' if best >= chosen else 'none '}  best {best:.3f}  {message!r}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args()
    return asyncio.run(measure(args.top_k))


if __name__ == "__main__":
    raise SystemExit(main())
