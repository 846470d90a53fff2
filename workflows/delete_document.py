"""DeleteDocumentWorkflow (id ``delete-{document_id}``): removes vectors, bytes
and rows; idempotent (deleting a deleted document succeeds)."""

from __future__ import annotations

from temporalio import workflow

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from activities.ingest import IngestActivities
    from core.models.ingest import DeleteDocumentInput


@workflow.defn
class DeleteDocumentWorkflow:
    @workflow.run
    async def run(self, inp: DeleteDocumentInput) -> None:
        await workflow.execute_activity_method(
            IngestActivities.delete_document, inp, **activity_presets.DATABASE
        )
