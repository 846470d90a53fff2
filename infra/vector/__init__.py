"""Vector-index adapters for the ``core.ports.VectorIndex`` port, and what they share.

- ``infra.vector.qdrant_index.QdrantIndex``: a Qdrant server, or qdrant-client local mode.
- ``infra.vector.edge_index.EdgeIndex``: the embedded Rust engine (qdrant-edge-py).
- ``infra.vector.factory.create_vector_index``: picks one from settings.

Both adapters store two named vectors per chunk -- ``dense`` (cosine) and
``sparse`` (keywords, IDF applied by the engine) -- and the same payload, and
both translate the same ``AclFilter`` into a filter on every query leg.

Keyword (sparse) vectors
------------------------
A simple BM25 built in Python so that both engines index identical vectors:

* tokens: lower-cased runs of Unicode word characters (``\\w+``), 2-64 chars; no
  stemming or stop-word list (IDF discounts frequent words);
* index: the first 4 bytes of blake2b(token) as an unsigned int below 2**31
  (collisions merely add two words' weights together);
* document value: the BM25 term-frequency part ``tf*(k1+1) / (tf + k1*(1-b+b*len/avg_len))``
  with k1 = 1.2, b = 0.75 and a fixed avg_len of 256 tokens (chunks are bounded);
* document text: the chunk's title and text; query value: 1.0 per distinct token;
* the engine multiplies by IDF (``Modifier.IDF``) computed over the collection,
  so the dot product is the BM25 score.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, get_args

from core.models.knowledge import ScoredChunk, Visibility, check_shared_with

COLLECTION = "keel_chunks"
DENSE = "dense"
SPARSE = "sparse"

#: Every payload key a filter may use; each gets a keyword payload index.
FILTERED_KEYS: tuple[str, ...] = (
    "doc_id",
    "kb_id",
    "owner_type",
    "owner_id",
    "shared_with",
    "visibility",
    "source",
    "doc_type",
)
#: Payload keys a search returns (the rest stay in the engine).
RESULT_KEYS: list[str] = ["doc_id", "kb_id", "title", "text", "page", "chunk_index", "owner_id", "version"]

BM25_K1 = 1.2
BM25_B = 0.75
BM25_AVG_LEN = 256.0
_TOKEN = re.compile(r"\w+")
_MIN_TOKEN, _MAX_TOKEN = 2, 64


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if _MIN_TOKEN <= len(t) <= _MAX_TOKEN]


@lru_cache(maxsize=65536)
def _token_index(token: str) -> int:
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF


def _sparse(weights: Mapping[str, float]) -> tuple[list[int], list[float]]:
    merged: dict[int, float] = {}
    for token, weight in weights.items():
        index = _token_index(token)
        merged[index] = merged.get(index, 0.0) + weight
    indices = sorted(merged)
    return indices, [merged[i] for i in indices]


def sparse_document(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a chunk's keyword vector; empty when it has no tokens."""
    tokens = tokenize(text)
    if not tokens:
        return [], []
    norm = BM25_K1 * (1.0 - BM25_B + BM25_B * len(tokens) / BM25_AVG_LEN)
    return _sparse({t: tf * (BM25_K1 + 1.0) / (tf + norm) for t, tf in Counter(tokens).items()})


def sparse_query(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a query's keyword vector; empty when it has no tokens."""
    return _sparse(dict.fromkeys(tokenize(text), 1.0))


def acl_update(shared_with: list[str], visibility: str) -> dict[str, Any]:
    """The payload patch ``set_document_acl`` writes, validated like a ``ChunkPayload``."""
    if visibility not in get_args(Visibility):
        raise ValueError(f"visibility must be one of {get_args(Visibility)}, got {visibility!r}")
    return {"shared_with": check_shared_with(list(shared_with)), "visibility": visibility}


def dense_similarity(query: Sequence[float], stored: object) -> float:
    """Cosine similarity of the query vector to a hit's dense vector as the engine returns
    it (a list, or named vectors holding ``DENSE``); 0.0 when either is all zeros."""
    dense = stored.get(DENSE) if isinstance(stored, dict) else stored
    if not isinstance(dense, list) or len(dense) != len(query):
        raise TypeError(f"the engine returned no dense vector for a hit: {type(stored).__name__}")
    dot = sum(float(x) * float(y) for x, y in zip(query, dense, strict=True))
    norm = math.sqrt(sum(x * x for x in query)) * math.sqrt(sum(float(y) * float(y) for y in dense))
    return dot / norm if norm else 0.0


def to_scored_chunk(
    point_id: object, score: float, payload: Mapping[str, Any] | None, *, similarity: float | None = None
) -> ScoredChunk:
    """A hit; ``similarity`` is its dense cosine similarity to the query (for a dense-only
    search, the score itself; for a fused one, computed from the hit's vector)."""
    data = payload or {}
    return ScoredChunk(
        chunk_id=str(point_id),
        doc_id=data["doc_id"],
        kb_id=data["kb_id"],
        title=data.get("title", ""),
        text=data.get("text", ""),
        page=data.get("page"),
        score=score,
        similarity=similarity,
        chunk_index=data["chunk_index"],
        owner_id=data.get("owner_id", ""),
        version=data.get("version", 1),
    )


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise ValueError("top_k must be >= 1")


def prefetch_limit(top_k: int) -> int:
    """How many candidates each hybrid leg contributes to the fusion."""
    return max(2 * top_k, 50)
