"""Knowledge bases, their documents and shares, and the direct query. Reads go through
the ACL filter (core.policy.acl); deletion and sharing are workflows, and the query runs
in the worker (the embedding model and the vector index live there). Uploads are in
``api.routes.uploads``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Response
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy

from api.deps import KbReader, ResourcesDep, Uploader
from api.errors import ApiError
from api.knowledge_access import managed_document, personal_kb, readable_document, readable_kb
from api.schemas import (
    DocumentList,
    KnowledgeBaseList,
    KnowledgeBaseView,
    QueryRequest,
    QueryResponse,
    ShareRequest,
    ShareResponse,
)
from api.state import ApiResources
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.documents import DocumentView
from core.models.ingest import DeleteDocumentInput, DocumentAclInput
from core.models.knowledge_query import KnowledgeQueryInput
from core.models.principal import Principal, group_principal, user_principal
from core.names import KIND_KNOWLEDGE_QUERY, acl_workflow_id, delete_workflow_id, knowledge_query_workflow_id
from core.policy.acl import acl_filter
from core.policy.documents import can_manage
from infra.db.knowledge_repo import KnowledgeBaseRecord, personal_kb_id
from workflows import search_attributes
from workflows.delete_document import DeleteDocumentWorkflow
from workflows.document_acl import DocumentAclWorkflow
from workflows.knowledge_query import KnowledgeQueryWorkflow

router = APIRouter(prefix="/api/v1", tags=["knowledge"])


def _kb_name(kb: KnowledgeBaseRecord, *, mine: bool) -> str:
    """Another person's personal knowledge base is named after its owner, so a reader of a
    shared document never sees two called "Personal"."""
    if kb.owner_type != "user" or mine:
        return kb.name
    if kb.owner_display_name:
        return f"{kb.owner_display_name}'s personal"
    return f"Personal ({kb.owner_email or kb.owner_id.removeprefix('user:')})"


def _kb_view(kb: KnowledgeBaseRecord, principal: Principal) -> KnowledgeBaseView:
    mine = kb.owner_type == "user" and kb.owner_id == user_principal(principal.user_id)
    return KnowledgeBaseView(
        id=kb.id,
        name=_kb_name(kb, mine=mine),
        description=kb.description,
        owner_type=kb.owner_type,
        personal=mine,
        can_upload=can_manage(principal, owner_type=kb.owner_type, owner_id=kb.owner_id),
    )


# ------------------------------------------------------------ knowledge bases
@router.get("/knowledge-bases", operation_id="list_knowledge_bases", response_model=KnowledgeBaseList)
async def list_knowledge_bases(principal: KbReader, resources: ResourcesDep) -> KnowledgeBaseList:
    """Knowledge bases I may read; my personal one is always first."""
    kbs = await resources.knowledge_repo.readable_kbs(acl_filter(principal))
    personal_id = personal_kb_id(principal.user_id)
    if all(kb.id != personal_id for kb in kbs):
        kbs.insert(0, await personal_kb(resources, principal))
    views = [_kb_view(kb, principal) for kb in kbs]
    views.sort(key=lambda v: not v.personal)
    return KnowledgeBaseList(knowledge_bases=views)


# ------------------------------------------------------------ documents
@router.get("/knowledge-bases/{kb_id}/documents", operation_id="list_documents", response_model=DocumentList)
async def list_documents(kb_id: str, principal: KbReader, resources: ResourcesDep) -> DocumentList:
    await readable_kb(resources, principal, kb_id)
    docs = await resources.knowledge_repo.readable_documents(
        acl_filter(principal, knowledge_base_ids=[kb_id])
    )
    return DocumentList(documents=list(docs))


@router.get(
    "/knowledge-bases/{kb_id}/documents/{doc_id}", operation_id="get_document", response_model=DocumentView
)
async def get_document(kb_id: str, doc_id: str, principal: KbReader, resources: ResourcesDep) -> DocumentView:
    return await readable_document(resources, principal, kb_id, doc_id)


@router.delete("/knowledge-bases/{kb_id}/documents/{doc_id}", operation_id="delete_document", status_code=204)
async def delete_document(kb_id: str, doc_id: str, principal: Uploader, resources: ResourcesDep) -> Response:
    doc = managed_document(principal, await readable_document(resources, principal, kb_id, doc_id))
    await resources.temporal.execute_workflow(
        DeleteDocumentWorkflow.run,
        DeleteDocumentInput(document_id=doc.id),
        id=delete_workflow_id(doc.id),
        task_queue=resources.settings.ingest_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.DOCUMENT_DELETED,
            user_id=principal.user_id,
            resource_type="document",
            resource_id=doc.id,
            details={"knowledge_base_id": doc.kb_id},
        )
    )
    return Response(status_code=204)


async def _change_shares(
    resources: ApiResources, principal: Principal, kb_id: str, doc_id: str, body: ShareRequest, *, add: bool
) -> ShareResponse:
    doc = managed_document(principal, await readable_document(resources, principal, kb_id, doc_id))
    principals = [user_principal(u) for u in body.user_ids] + [group_principal(g) for g in body.group_ids]
    result = await resources.temporal.execute_workflow(
        DocumentAclWorkflow.run,
        DocumentAclInput(document_id=doc.id, add=principals if add else [], remove=[] if add else principals),
        id=acl_workflow_id(doc.id, uuid.uuid4().hex[:12]),
        task_queue=resources.settings.ingest_task_queue,
    )
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.DOCUMENT_SHARED if add else AuditEvent.DOCUMENT_UNSHARED,
            user_id=principal.user_id,
            resource_type="document",
            resource_id=doc.id,
            details={"knowledge_base_id": doc.kb_id, "principals": principals},
        )
    )
    return ShareResponse(document_id=doc.id, shared_with=result.shared_with)


@router.post(
    "/knowledge-bases/{kb_id}/documents/{doc_id}/shares",
    operation_id="share_document",
    response_model=ShareResponse,
)
async def share_document(
    kb_id: str, doc_id: str, body: ShareRequest, principal: Uploader, resources: ResourcesDep
) -> ShareResponse:
    return await _change_shares(resources, principal, kb_id, doc_id, body, add=True)


@router.delete(
    "/knowledge-bases/{kb_id}/documents/{doc_id}/shares",
    operation_id="unshare_document",
    response_model=ShareResponse,
)
async def unshare_document(
    kb_id: str, doc_id: str, body: ShareRequest, principal: Uploader, resources: ResourcesDep
) -> ShareResponse:
    return await _change_shares(resources, principal, kb_id, doc_id, body, add=False)


@router.post(
    "/knowledge-bases/{kb_id}/query", operation_id="query_knowledge_base", response_model=QueryResponse
)
async def query_knowledge_base(
    kb_id: str, body: QueryRequest, principal: KbReader, resources: ResourcesDep
) -> QueryResponse:
    """Ranked chunks of this knowledge base that I may read."""
    await readable_kb(resources, principal, kb_id)
    # The embedding model and the vector index live in the worker: search there.
    query = KnowledgeQueryInput(
        acl=acl_filter(principal, knowledge_base_ids=[kb_id]), query=body.query, top_k=body.top_k
    )
    try:
        found = await resources.temporal.execute_workflow(
            KnowledgeQueryWorkflow.run,
            query,
            id=knowledge_query_workflow_id(uuid.uuid4().hex),
            task_queue=resources.settings.retrieval_task_queue,
            execution_timeout=timedelta(seconds=resources.settings.request_timeout_s),
            search_attributes=search_attributes.for_kind(
                user_id=principal.user_id, kind=KIND_KNOWLEDGE_QUERY
            ),
        )
    except WorkflowFailureError as err:
        raise ApiError(ErrorCode.RETRIEVAL_UNAVAILABLE, "knowledge search is unavailable; try again") from err
    return QueryResponse(results=list(found.chunks))
