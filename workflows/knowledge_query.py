"""KnowledgeQueryWorkflow: one direct knowledge-base query, run where the embedding model
and the vector index live (the worker). One activity; the API waits for the result."""

from __future__ import annotations

from temporalio import workflow

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.models.knowledge_query import KnowledgeQueryInput, KnowledgeQueryResult
    from workflows.activity_defs import KnowledgeQueryActivities


@workflow.defn
class KnowledgeQueryWorkflow:
    @workflow.run
    async def run(self, inp: KnowledgeQueryInput) -> KnowledgeQueryResult:
        return await workflow.execute_activity_method(
            KnowledgeQueryActivities.search_knowledge, inp, **activity_presets.VECTOR
        )
