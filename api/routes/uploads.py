"""Uploads: one file (``POST /knowledge-bases/{id}/documents``) or a batch
(``POST /knowledge-bases/{id}/ingestions``, then ``GET /ingestions/{id}``).

Upload is the one place the API writes: the bytes must be in the blob store
before a workflow can reference them, and the document row is written in the
same step so the returned id is readable at once. One document per file in a
knowledge base (``KnowledgeRepository.add_upload``): bytes already there answer
that document, a file under a name already there is its next version.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, NamedTuple

from fastapi import APIRouter, File, UploadFile
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from api.deps import ResourcesDep, Uploader
from api.errors import ApiError
from api.knowledge_access import writable_kb
from api.schemas import BatchAccepted, DocumentAccepted
from api.state import ApiResources
from api.text_guard import refuse_bad_text
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.ingest import BatchIngestInput, BatchStatus, IngestDocumentInput
from core.models.principal import Principal
from core.names import batch_workflow_id, ingest_workflow_id
from infra.blobstore import StoredBlob
from infra.db.knowledge_repo import DocumentRecord, KnowledgeBaseRecord, UploadResult
from infra.temporal_client import stop_superseded_ingestion
from workflows import search_attributes
from workflows.batch_ingest import BatchIngestWorkflow
from workflows.ingest_document import IngestDocumentWorkflow

router = APIRouter(prefix="/api/v1", tags=["knowledge"])

_READ_CHUNK = 1024 * 1024
_MAX_BATCH_FILES = 100
_BUSY_RETRY_AFTER_S = 30


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


# ------------------------------------------------------------------ one file
@router.post(
    "/knowledge-bases/{kb_id}/documents",
    operation_id="upload_document",
    status_code=202,
    response_model=DocumentAccepted,
)
async def upload_document(
    kb_id: str, file: Annotated[UploadFile, File()], principal: Uploader, resources: ResourcesDep
) -> DocumentAccepted:
    kb = await writable_kb(resources, principal, kb_id)
    _check_files(resources, [file])
    await _check_in_flight(resources, principal, 1)
    result = await _add_document(resources, principal, kb, await _store_blob(resources, file))
    if result.outcome != "duplicate":
        await _start_ingest(resources, principal, result.document)
    await _audit_upload(resources, principal, result)
    return _accepted(result)


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
    kb = await writable_kb(resources, principal, kb_id)
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
            # a batch's children cannot terminate a running workflow of the same id
            await stop_superseded_ingestion(resources.temporal, doc.id, doc.version)
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
    return await handle.query(BatchIngestWorkflow.progress)
