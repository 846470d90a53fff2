"""DeleteDocumentWorkflow (id ``delete-{document_id}``): stops the document's running
ingestion, then removes vectors, bytes and rows; idempotent (deleting a deleted
document succeeds).

Stopping the ingestion saves its work; it is not what keeps a deleted document
unreadable. That is the delete activity: it marks the row and removes the
vectors under the document's lock, and every indexing batch checks the row
under the same lock before it writes, so no vector lands after the delete in
whatever order the two workflows run.
"""

from __future__ import annotations

import contextlib

from temporalio import workflow
from temporalio.exceptions import FailureError

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.models.ingest import DeleteDocumentInput
    from core.names import ingest_workflow_id
    from workflows.activity_defs import IngestActivities


@workflow.defn
class DeleteDocumentWorkflow:
    @workflow.run
    async def run(self, inp: DeleteDocumentInput) -> None:
        # A FailureError means no ingestion is running (finished, or never started).
        with contextlib.suppress(FailureError):
            await workflow.get_external_workflow_handle(ingest_workflow_id(inp.document_id)).cancel()
        await workflow.execute_activity_method(
            IngestActivities.delete_document, inp, **activity_presets.DATABASE
        )
