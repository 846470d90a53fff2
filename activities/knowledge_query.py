"""The direct knowledge-base query, run in the worker: embed the text, search what the
caller may read (the ACL filter arrives from the API), return the ranked chunks.

The embedding model and the embedded vector index belong to the worker process, so
the API process never loads torch or qdrant-edge (docs/architecture.md).
"""

from __future__ import annotations

from temporalio import activity

from core.models.knowledge_query import KnowledgeQueryInput, KnowledgeQueryResult
from infra.call_metrics import KNOWLEDGE_QUERIES
from infra.call_spans import retrieval
from infra.circuit import Circuits
from infra.db.knowledge_repo import KnowledgeRepository
from infra.knowledge import KnowledgeServices, search_readable

from .circuits import vector_circuit


class KnowledgeQueryActivities:
    def __init__(
        self, *, knowledge: KnowledgeServices, repo: KnowledgeRepository, circuits: Circuits | None = None
    ) -> None:
        self._knowledge = knowledge
        self._repo = repo
        self._circuits = circuits or Circuits(redis=None, configs={})

    @activity.defn
    async def search_knowledge(self, inp: KnowledgeQueryInput) -> KnowledgeQueryResult:
        """The chunks matching ``inp.query`` that ``inp.acl`` may read, best first."""
        kb_ids = inp.acl.knowledge_base_ids or ()
        with retrieval(knowledge_base_ids=kb_ids, top_k=inp.top_k, query=inp.query) as found:
            vector = await self._knowledge.embedder.embed_query(inp.query)
            async with vector_circuit(self._circuits):
                await self._knowledge.index.ensure_collection(len(vector))
                chunks = await search_readable(
                    self._knowledge.index,
                    self._repo,
                    vector,
                    acl=inp.acl,
                    top_k=inp.top_k,
                    query_text=inp.query,
                )
            found.results(len(chunks))
        KNOWLEDGE_QUERIES.inc()  # after the search: a failed attempt that is retried counts nothing
        return KnowledgeQueryResult(chunks=chunks)
