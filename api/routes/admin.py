"""Admin routes (permission-checked): org knowledge bases and the failed-operations view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from temporalio.common import WorkflowIDReusePolicy

from api.deps import OrgKbAdmin, ResourcesDep
from api.errors import ApiError
from api.schemas import CreateKnowledgeBaseRequest, FailedOperationList, KnowledgeBaseView
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.documents import FailedOperationView
from core.models.ingest import IngestDocumentInput
from core.names import ingest_workflow_id
from workflows import search_attributes
from workflows.ingest_document import IngestDocumentWorkflow

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.post(
    "/knowledge-bases",
    operation_id="create_org_knowledge_base",
    status_code=201,
    response_model=KnowledgeBaseView,
)
async def create_org_knowledge_base(
    body: CreateKnowledgeBaseRequest, principal: OrgKbAdmin, resources: ResourcesDep
) -> KnowledgeBaseView:
    kb = await resources.knowledge_repo.create_kb(
        name=body.name,
        description=body.description,
        owner_type="org",
        owner_id="org",
        created_by=principal.user_id,
    )
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.ADMIN_KNOWLEDGE_BASE_CREATED,
            user_id=principal.user_id,
            resource_type="knowledge_base",
            resource_id=kb.id,
            details={"owner_type": "org"},
        )
    )
    return KnowledgeBaseView(
        id=kb.id, name=kb.name, description=kb.description, owner_type="org", personal=False, can_upload=True
    )


@router.get("/failed-operations", operation_id="list_failed_operations", response_model=FailedOperationList)
async def list_failed_operations(
    principal: OrgKbAdmin,
    resources: ResourcesDep,
    status: Annotated[str | None, Query(pattern="^(open|retried|resolved)$")] = "open",
) -> FailedOperationList:
    ops = await resources.knowledge_repo.failed_operations(status=status)
    return FailedOperationList(failed_operations=list(ops))


@router.post(
    "/failed-operations/{op_id}/retry",
    operation_id="retry_failed_operation",
    status_code=202,
    response_model=FailedOperationView,
)
async def retry_failed_operation(
    op_id: str, principal: OrgKbAdmin, resources: ResourcesDep
) -> FailedOperationView:
    op = await resources.knowledge_repo.failed_operation(op_id)
    if op is None or op.kind != "ingest":
        raise ApiError(ErrorCode.NOT_FOUND, "failed operation not found")
    doc = await resources.knowledge_repo.document(op.resource_id)
    if doc is None:
        raise ApiError(ErrorCode.DOCUMENT_NOT_FOUND, "the document was deleted")
    await resources.knowledge_repo.set_status(doc.id, "processing")
    await resources.temporal.start_workflow(
        IngestDocumentWorkflow.run,
        IngestDocumentInput(document_id=doc.id),
        id=ingest_workflow_id(doc.id),
        task_queue=resources.settings.ingest_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=search_attributes.for_kind(user_id=principal.user_id, kind="ingest"),
    )
    await resources.knowledge_repo.mark_retried(op.id)
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.ADMIN_OPERATION_RETRIED,
            user_id=principal.user_id,
            resource_type="failed_operation",
            resource_id=op.id,
            details={"kind": op.kind, "document_id": doc.id},
        )
    )
    updated = await resources.knowledge_repo.failed_operation(op.id)
    assert updated is not None
    return updated
