"""Stand-ins for the embedding model (an external model) behind the ``Embedder`` port.

- ``HashEmbedder``: deterministic, words hashed to 32 dims; shared words make texts close.
- ``GatedEmbedder``: the same vectors, but every ``embed_documents`` call waits for a
  token the test hands out, so a test decides exactly how far an ingestion has got
  when it shares, unshares or deletes (the race window of a large document).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence

DIM = 32


class HashEmbedder:
    """A deterministic stand-in for the embedding model: words hashed to 32 dims."""

    @property
    def model_name(self) -> str:
        return "test-word-hash-32"

    @property
    def dimension(self) -> int:
        return DIM

    async def ensure_dimension(self) -> int:
        return DIM

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    async def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    async def aclose(self) -> None:
        return None

    @staticmethod
    def _embed(text: str) -> list[float]:
        vec = [0.0] * DIM
        vec[0] = 0.05  # never the zero vector
        for word in text.lower().split():
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            vec[digest[0] % DIM] += 1.0 if digest[1] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vec))
        return [x / norm for x in vec]


class GatedEmbedder(HashEmbedder):
    """``HashEmbedder`` whose document batches each wait for a token (queries never wait).

    All callers share one event loop (the tests run workers in process), so checking
    and taking a token with no ``await`` in between is atomic.
    """

    def __init__(self) -> None:
        self.tokens = 0  # batches allowed through and not yet taken
        self.waiting = 0  # batches blocked at the gate right now
        self.batches = 0  # batches let through so far
        self._open = False
        self._changed = asyncio.Event()

    def release(self, batches: int = 1) -> None:
        self.tokens += batches
        self._changed.set()

    def open(self) -> None:
        """Let every batch through from now on."""
        self._open = True
        self._changed.set()

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.waiting += 1
        try:
            while not self._open and self.tokens == 0:
                self._changed.clear()
                await self._changed.wait()
        finally:
            self.waiting -= 1
        if not self._open:
            self.tokens -= 1
        self.batches += 1
        return await super().embed_documents(texts)
