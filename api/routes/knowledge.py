"""Knowledge bases and documents. Reads go through the ACL filter
(core.policy.acl); ingestion, deletion and sharing are workflows.

Upload is the one place the API writes: the bytes must be in the blob store
before a workflow can reference them, and the document row is written in the
same step so the returned id is readable at once. One document per file in a
knowledge base (``KnowledgeRepository.add_upload``): bytes already there answer
that document, a file under a name already there is its next version.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Annotated, NamedTuple

from fastapi import APIRouter, File, Response, UploadFile
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import KbReader, ResourcesDep, Uploader
from api.errors import ApiError
from api.schemas import (
    BatchAccepted,
    BatchStatus,
    DocumentAccepted,
    DocumentList,
    DocumentView,
    KnowledgeBaseList,
    KnowledgeBaseView,
    QueryRequest,
    QueryResponse,
    QueryResult,
    ShareRequest,
    ShareResponse,
)
from api.state import ApiResources
from api.text_guard import refuse_bad_text
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.ingest import BatchIngestInput, DeleteDocumentInput, DocumentAclInput, IngestDocumentInput
from core.models.knowledge_query import KnowledgeQueryInput
from core.models.principal import Principal, group_principal, user_principal
from core.names import (
    KIND_KNOWLEDGE_QUERY,
    acl_workflow_id,
    batch_workflow_id,
    delete_workflow_id,
    ingest_workflow_id,
    knowledge_query_workflow_id,
)
from core.policy.acl import acl_filter
from core.policy.documents import can_manage
from infra.blobstore import StoredBlob
from infra.db.knowledge_repo import DocumentRecord, KnowledgeBaseRecord, UploadResult, personal_kb_id
from workflows import search_attributes
from workflows.batch_ingest import BatchIngestWorkflow
from workflows.delete_document import DeleteDocumentWorkflow
from workflows.document_acl import DocumentAclWorkflow
from workflows.ingest_document import IngestDocumentWorkflow
from workflows.knowledge_query import KnowledgeQueryWorkflow

router = APIRouter(prefix="/api/v1", tags=["knowledge"])

_READ_CHUNK = 1024 * 1024
_MAX_BATCH_FILES = 100
_BUSY_RETRY_AFTER_S = 30


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


def _doc_view(doc: DocumentRecord) -> DocumentView:
    return DocumentView.model_validate(doc.model_dump())


async def _personal_kb(resources: ApiResources, principal: Principal) -> KnowledgeBaseRecord:
    return await resources.knowledge_repo.ensure_personal_kb(
        principal.user_id, display_name=principal.display_name, email=principal.email
    )


async def _readable_kb(resources: ApiResources, principal: Principal, kb_id: str) -> KnowledgeBaseRecord:
    if kb_id == personal_kb_id(principal.user_id):
        return await _personal_kb(resources, principal)
    kbs = await resources.knowledge_repo.readable_kbs(acl_filter(principal))
    for kb in kbs:
        if kb.id == kb_id:
            return kb
    raise ApiError(ErrorCode.KNOWLEDGE_BASE_NOT_FOUND, "knowledge base not found")


async def _writable_kb(resources: ApiResources, principal: Principal, kb_id: str) -> KnowledgeBaseRecord:
    kb = await _readable_kb(resources, principal, kb_id)
    if not can_manage(principal, owner_type=kb.owner_type, owner_id=kb.owner_id):
        raise ApiError(ErrorCode.FORBIDDEN, "you may not add documents to this knowledge base")
    return kb


async def _readable_doc(
    resources: ApiResources, principal: Principal, kb_id: str, doc_id: str
) -> DocumentRecord:
    doc = await resources.knowledge_repo.readable_document(
        doc_id, acl_filter(principal, knowledge_base_ids=[kb_id])
    )
    if doc is None:
        raise ApiError(ErrorCode.DOCUMENT_NOT_FOUND, "document not found")
    return doc


def _managed(principal: Principal, doc: DocumentRecord) -> DocumentRecord:
    if not can_manage(principal, owner_type=doc.owner_type, owner_id=doc.owner_id):
        raise ApiError(ErrorCode.FORBIDDEN, "only the document's owner may change it")
    return doc


def _too_large(upload: UploadFile, limit: int) -> ApiError:
    return ApiError(
        ErrorCode.FILE_TOO_LARGE,
        f"{upload.filename or 'the file'} is larger than the {limit} byte limit",
        status=413,
    )


def _check_files(resources: ApiResources, files: Sequence[UploadFile]) -> None:
    """Names and sizes of every file, before anything is stored (Starlette knows each
    spooled file's size)."""
    limit = resources.settings.ingest_max_file_bytes
    for upload in files:
        refuse_bad_text(upload.filename or "", field="the file name")
        refuse_bad_text(upload.content_type or "", field="the file's content type")
        if upload.size is not None and upload.size > limit:
            raise _too_large(upload, limit)


async def _check_in_flight(resources: ApiResources, principal: Principal, adding: int) -> None:
    """At most ``KEEL_INGEST_MAX_IN_FLIGHT_PER_USER`` of a user's documents processing at once."""
    limit = resources.settings.ingest_max_in_flight_per_user
    if adding > limit:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"at most {limit} documents may be processing at once; send at most {limit} files per request",
        )
    busy = await resources.knowledge_repo.processing_count(created_by=principal.user_id)
    if busy + adding > limit:
        raise ApiError(
            ErrorCode.INGEST_BUSY,
            f"{busy} of your documents are still processing and at most {limit} may be at once; "
            "retry when some are ready",
            headers={"Retry-After": str(_BUSY_RETRY_AFTER_S)},
        )


async def _chunks_of(upload: UploadFile, limit: int) -> AsyncIterator[bytes]:
    size = 0
    while chunk := await upload.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(upload, limit)
        yield chunk


class _StoredUpload(NamedTuple):
    doc_id: str
    filename: str
    content_type: str | None
    blob_key: str
    blob: StoredBlob


async def _store_blob(resources: ApiResources, upload: UploadFile) -> _StoredUpload:
    """Stream one upload to the blob store (1 MiB at a time, never whole in memory)."""
    doc_id = "doc-" + uuid.uuid4().hex[:24]
    filename = (upload.filename or "document").replace("/", "_").replace("\\", "_")[:255] or "document"
    blob_key = f"documents/{doc_id}"
    limit = resources.settings.ingest_max_file_bytes
    blob = await resources.knowledge.blobs.put_stream(blob_key, _chunks_of(upload, limit))
    return _StoredUpload(doc_id, filename, upload.content_type, blob_key, blob)


async def _add_document(
    resources: ApiResources, principal: Principal, kb: KnowledgeBaseRecord, stored: _StoredUpload
) -> UploadResult:
    """The stored file as a document of ``kb`` (new, a new version, or the one already
    holding these bytes); the blob no row references any more is deleted."""
    result = await resources.knowledge_repo.add_upload(
        kb_id=kb.id,
        filename=stored.filename,
        id=stored.doc_id,
        title=stored.filename,
        content_type=stored.content_type,
        size_bytes=stored.blob.size_bytes,
        sha256=stored.blob.sha256,
        blob_key=stored.blob_key,
        source="upload",
        owner_type=kb.owner_type,
        owner_id=kb.owner_id,
        status="processing",
        created_by=principal.user_id,
    )
    if result.orphan_blob_key is not None:
        await resources.knowledge.blobs.delete(result.orphan_blob_key)
    return result


def _accepted(result: UploadResult) -> DocumentAccepted:
    doc = result.document
    return DocumentAccepted(
        document_id=doc.id, status=doc.status, version=doc.version, duplicate=result.outcome == "duplicate"
    )


async def _start_ingest(resources: ApiResources, principal: Principal, doc: DocumentRecord) -> None:
    """Ingest this version; a still-running ingestion of an older one is terminated (its
    activities would stop at their next write anyway: they check the version)."""
    await resources.temporal.start_workflow(
        IngestDocumentWorkflow.run,
        IngestDocumentInput(document_id=doc.id, version=doc.version),
        id=ingest_workflow_id(doc.id),
        task_queue=resources.settings.ingest_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        search_attributes=search_attributes.for_kind(user_id=principal.user_id, kind="ingest"),
    )


async def _stop_older_ingestion(resources: ApiResources, doc: DocumentRecord) -> None:
    """Before a batch ingests a new version: terminate the old version's ingestion if it
    still runs (a batch's children cannot terminate a running workflow of the same id)."""
    handle = resources.temporal.get_workflow_handle(ingest_workflow_id(doc.id))
    try:
        await handle.terminate(reason=f"superseded by version {doc.version}")
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


async def _audit_upload(
    resources: ApiResources, principal: Principal, result: UploadResult, *, batch_id: str | None = None
) -> None:
    doc = result.document
    details: dict[str, object] = {
        "knowledge_base_id": doc.kb_id,
        "size_bytes": doc.size_bytes,
        "outcome": result.outcome,
        "version": doc.version,
    }
    if batch_id is not None:
        details["batch_id"] = batch_id
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.DOCUMENT_UPLOADED,
            user_id=principal.user_id,
            resource_type="document",
            resource_id=doc.id,
            details=details,
        )
    )


# ------------------------------------------------------------ knowledge bases
@router.get("/knowledge-bases", operation_id="list_knowledge_bases", response_model=KnowledgeBaseList)
async def list_knowledge_bases(principal: KbReader, resources: ResourcesDep) -> KnowledgeBaseList:
    """Knowledge bases I may read; my personal one is always first."""
    kbs = await resources.knowledge_repo.readable_kbs(acl_filter(principal))
    personal_id = personal_kb_id(principal.user_id)
    if all(kb.id != personal_id for kb in kbs):
        kbs.insert(0, await _personal_kb(resources, principal))
    views = [_kb_view(kb, principal) for kb in kbs]
    views.sort(key=lambda v: not v.personal)
    return KnowledgeBaseList(knowledge_bases=views)


@router.post(
    "/knowledge-bases/{kb_id}/documents",
    operation_id="upload_document",
    status_code=202,
    response_model=DocumentAccepted,
)
async def upload_document(
    kb_id: str, file: Annotated[UploadFile, File()], principal: Uploader, resources: ResourcesDep
) -> DocumentAccepted:
    kb = await _writable_kb(resources, principal, kb_id)
    _check_files(resources, [file])
    await _check_in_flight(resources, principal, 1)
    result = await _add_document(resources, principal, kb, await _store_blob(resources, file))
    if result.outcome != "duplicate":
        await _start_ingest(resources, principal, result.document)
    await _audit_upload(resources, principal, result)
    return _accepted(result)


@router.get("/knowledge-bases/{kb_id}/documents", operation_id="list_documents", response_model=DocumentList)
async def list_documents(kb_id: str, principal: KbReader, resources: ResourcesDep) -> DocumentList:
    await _readable_kb(resources, principal, kb_id)
    docs = await resources.knowledge_repo.readable_documents(
        acl_filter(principal, knowledge_base_ids=[kb_id])
    )
    return DocumentList(documents=[_doc_view(d) for d in docs])


@router.get(
    "/knowledge-bases/{kb_id}/documents/{doc_id}", operation_id="get_document", response_model=DocumentView
)
async def get_document(kb_id: str, doc_id: str, principal: KbReader, resources: ResourcesDep) -> DocumentView:
    return _doc_view(await _readable_doc(resources, principal, kb_id, doc_id))


@router.delete("/knowledge-bases/{kb_id}/documents/{doc_id}", operation_id="delete_document", status_code=204)
async def delete_document(kb_id: str, doc_id: str, principal: Uploader, resources: ResourcesDep) -> Response:
    doc = _managed(principal, await _readable_doc(resources, principal, kb_id, doc_id))
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
    doc = _managed(principal, await _readable_doc(resources, principal, kb_id, doc_id))
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
    await _readable_kb(resources, principal, kb_id)
    # The embedding model and the vector index live in the worker: search there.
    query = KnowledgeQueryInput(
        acl=acl_filter(principal, knowledge_base_ids=[kb_id]), query=body.query, top_k=body.top_k
    )
    try:
        found = await resources.temporal.execute_workflow(
            KnowledgeQueryWorkflow.run,
            query,
            id=knowledge_query_workflow_id(uuid.uuid4().hex),
            task_queue=resources.settings.chat_task_queue,
            execution_timeout=timedelta(seconds=resources.settings.request_timeout_s),
            search_attributes=search_attributes.for_kind(
                user_id=principal.user_id, kind=KIND_KNOWLEDGE_QUERY
            ),
        )
    except WorkflowFailureError as err:
        raise ApiError(ErrorCode.RETRIEVAL_UNAVAILABLE, "knowledge search is unavailable; try again") from err
    return QueryResponse(results=[QueryResult.model_validate(c.model_dump()) for c in found.chunks])


# ------------------------------------------------------------------ batches
@router.post(
    "/knowledge-bases/{kb_id}/ingestions",
    operation_id="start_ingestion",
    status_code=202,
    response_model=BatchAccepted,
)
async def start_ingestion(
    kb_id: str, files: Annotated[list[UploadFile], File()], principal: Uploader, resources: ResourcesDep
) -> BatchAccepted:
    kb = await _writable_kb(resources, principal, kb_id)
    if not files:
        raise ApiError(ErrorCode.INVALID_REQUEST, "send at least one file")
    if len(files) > _MAX_BATCH_FILES:
        raise ApiError(ErrorCode.INVALID_REQUEST, f"send at most {_MAX_BATCH_FILES} files per request")
    _check_files(resources, files)
    await _check_in_flight(resources, principal, len(files))
    # One file at a time to the blob store; rows only once all are stored: a refused
    # batch leaves nothing behind (blobs already written are deleted).
    stored: list[_StoredUpload] = []
    try:
        for upload in files:
            stored.append(await _store_blob(resources, upload))
    except Exception:
        for done in stored:
            await resources.knowledge.blobs.delete(done.blob_key)
        raise
    results = [await _add_document(resources, principal, kb, s) for s in stored]
    # What the batch ingests: each new document or new version once, at its last version
    # (a batch holding one name twice ingests the later file); files already in the
    # knowledge base answer their document and are not ingested again.
    to_ingest = {r.document.id: r.document for r in results if r.outcome != "duplicate"}
    for doc in to_ingest.values():
        if doc.version > 1:
            await _stop_older_ingestion(resources, doc)
    batch_id = "batch-" + uuid.uuid4().hex[:20]
    await resources.knowledge_repo.insert_batch(
        batch_id=batch_id, kb_id=kb.id, user_id=principal.user_id, document_ids=list(to_ingest)
    )
    await resources.temporal.start_workflow(
        BatchIngestWorkflow.run,
        BatchIngestInput(
            batch_id=batch_id,
            document_ids=list(to_ingest),
            versions={doc_id: doc.version for doc_id, doc in to_ingest.items()},
            max_concurrency=resources.settings.ingest_batch_concurrency,
        ),
        id=batch_workflow_id(batch_id),
        task_queue=resources.settings.ingest_task_queue,
        search_attributes=search_attributes.for_kind(user_id=principal.user_id, kind="ingest"),
    )
    for result in results:
        await _audit_upload(resources, principal, result, batch_id=batch_id)
    return BatchAccepted(batch_id=batch_id, document_ids=[r.document.id for r in results])


@router.get("/ingestions/{batch_id}", operation_id="get_ingestion", response_model=BatchStatus)
async def get_ingestion(batch_id: str, principal: Uploader, resources: ResourcesDep) -> BatchStatus:
    if await resources.knowledge_repo.batch_owner(batch_id) != principal.user_id:
        raise ApiError(ErrorCode.NOT_FOUND, "ingestion batch not found")
    handle = resources.temporal.get_workflow_handle_for(BatchIngestWorkflow.run, batch_workflow_id(batch_id))
    progress = await handle.query(BatchIngestWorkflow.progress)
    return BatchStatus.model_validate(progress.model_dump())
