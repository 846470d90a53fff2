"""BatchIngestWorkflow (id ``batch-{batch_id}``): ingests many documents as child
IngestDocumentWorkflows with bounded concurrency; progress is a Query. A child
stopped by a newer upload of its document (which terminates the old version's
ingestion and ingests the new one itself) counts as done, status ``superseded``.

Children carry the batch's ``KeelUserId`` and ``KeelKind`` (Temporal does not pass
search attributes on to children), so an operator's filter finds all of them."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from core.models.ingest import BatchIngestInput, BatchProgress, IngestDocumentInput, IngestDocumentOutput
    from core.names import KIND_INGEST, ingest_workflow_id
    from workflows import search_attributes
    from workflows.ingest_document import IngestDocumentWorkflow


@workflow.defn
class BatchIngestWorkflow:
    @workflow.init
    def __init__(self, inp: BatchIngestInput) -> None:
        self._input = inp
        self._results: dict[str, IngestDocumentOutput] = {}

    @workflow.run
    async def run(self, inp: BatchIngestInput) -> BatchProgress:
        limit = asyncio.Semaphore(inp.max_concurrency)
        user_id = workflow.info().typed_search_attributes.get(search_attributes.USER_ID)
        child_attributes = (
            search_attributes.for_kind(user_id=user_id, kind=KIND_INGEST) if user_id is not None else None
        )

        async def ingest(document_id: str) -> None:
            async with limit:
                try:
                    result = await workflow.execute_child_workflow(
                        IngestDocumentWorkflow.run,
                        IngestDocumentInput(document_id=document_id, version=inp.versions.get(document_id)),
                        id=ingest_workflow_id(document_id),
                        parent_close_policy=ParentClosePolicy.ABANDON,
                        search_attributes=child_attributes,
                    )
                except (ChildWorkflowError, WorkflowAlreadyStartedError):
                    result = IngestDocumentOutput(document_id=document_id, status="superseded")
                self._results[document_id] = result

        await asyncio.gather(*(ingest(d) for d in inp.document_ids))
        return self.progress()

    @workflow.query
    def progress(self) -> BatchProgress:
        results = self._results.values()
        failed = [r.document_id for r in results if r.status == "failed"]
        total = len(self._input.document_ids)
        return BatchProgress(
            batch_id=self._input.batch_id,
            total=total,
            processing=total - len(self._results),
            ready=sum(1 for r in results if r.status == "ready"),
            failed=len(failed),
            done=len(self._results) == total,
            failed_document_ids=failed,
        )
