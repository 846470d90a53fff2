"""IngestDocumentWorkflow (id ``ingest-{document_id}``): parse → chunk → embed →
upsert with the ACL payload → mark ready. A failure marks the document failed
with its reason and lands in the failed-operations view, from which an admin
retries it (a new run with the same id). A delete of the document cancels the
run; it then ends with status ``deleted`` (not as a failure). A new upload of the
document's file (its next version) stops the run: ``superseded``, nothing of the old
version written after the new one was recorded (the activities check the version
under the document's lock)."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorCode
    from core.models.ingest import IngestDocumentInput, IngestDocumentOutput, MarkDocumentInput
    from workflows.activity_defs import IngestActivities


@workflow.defn
class IngestDocumentWorkflow:
    @workflow.run
    async def run(self, inp: IngestDocumentInput) -> IngestDocumentOutput:
        try:
            return await self._ingest(inp)
        except asyncio.CancelledError:
            # Cancelled by DeleteDocumentWorkflow: the document is going away.
            return IngestDocumentOutput(document_id=inp.document_id, status="deleted")

    async def _ingest(self, inp: IngestDocumentInput) -> IngestDocumentOutput:
        workflow_id = workflow.info().workflow_id
        try:
            parsed = await workflow.execute_activity_method(
                IngestActivities.parse_document, inp, **activity_presets.PARSE
            )
            inp = inp.model_copy(update={"version": parsed.version})
            await workflow.execute_activity_method(
                IngestActivities.index_chunks, inp, **activity_presets.INDEX
            )
        except ActivityError as err:
            code, message = _failure(err)
            if code == ErrorCode.DOCUMENT_NOT_FOUND or isinstance(err.cause, CancelledError):
                return IngestDocumentOutput(document_id=inp.document_id, status="deleted")
            if code == ErrorCode.DOCUMENT_SUPERSEDED:
                return IngestDocumentOutput(document_id=inp.document_id, status="superseded")
            await workflow.execute_activity_method(
                IngestActivities.mark_document,
                MarkDocumentInput(
                    document_id=inp.document_id,
                    status="failed",
                    version=inp.version,
                    error_code=code,
                    error_message=message,
                    workflow_id=workflow_id,
                ),
                **activity_presets.DATABASE,
            )
            return IngestDocumentOutput(
                document_id=inp.document_id, status="failed", error_code=code, error_message=message
            )
        await workflow.execute_activity_method(
            IngestActivities.mark_document,
            MarkDocumentInput(
                document_id=inp.document_id,
                status="ready",
                version=parsed.version,
                chunk_count=parsed.chunk_count,
                page_count=parsed.page_count,
                doc_type=parsed.doc_type,
                title=parsed.title,
                workflow_id=workflow_id,
            ),
            **activity_presets.DATABASE,
        )
        return IngestDocumentOutput(
            document_id=inp.document_id, status="ready", chunk_count=parsed.chunk_count
        )


def _failure(err: ActivityError) -> tuple[str, str]:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type, cause.message
    return ErrorCode.UPSTREAM_UNAVAILABLE, "ingestion could not finish; retry it from the failed operations"
