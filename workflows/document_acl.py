"""DocumentAclWorkflow: share or unshare a document in Postgres and in every
chunk's Qdrant payload, so the change is visible on the next query."""

from __future__ import annotations

from temporalio import workflow

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.models.ingest import DocumentAclInput, DocumentAclResult
    from workflows.activity_defs import IngestActivities


@workflow.defn
class DocumentAclWorkflow:
    @workflow.run
    async def run(self, inp: DocumentAclInput) -> DocumentAclResult:
        return await workflow.execute_activity_method(
            IngestActivities.update_document_acl, inp, **activity_presets.DATABASE
        )
