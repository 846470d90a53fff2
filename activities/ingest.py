"""Ingestion activities: parse → chunk → embed → upsert, delete, share.

Bytes come from the blob store by key and chunk texts go to Postgres, so only
ids and counters cross the workflow boundary. ``index_chunks`` heartbeats the
next chunk index after every batch and resumes from it; point ids are
deterministic (doc id + chunk index), so a retry never duplicates a vector.

A new upload of a document's file makes its next version (same id). A run pins the
version it parsed; every later write of the run (chunk texts, vector batches, the
final mark) happens only while the document is still at that version, checked under
the document's lock, so a run overtaken by a newer upload stops
(``document_superseded``) without writing anything of the old version.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.errors import ErrorCode, KeelError
from core.ingest.chunking import chunk_document
from core.models.ingest import (
    DeleteDocumentInput,
    DocumentAclInput,
    DocumentAclResult,
    IndexResult,
    IngestDocumentInput,
    MarkDocumentInput,
    ParseResult,
)
from core.models.knowledge import ChunkPayload, point_id
from core.ports import IndexPoint, VectorIndex
from infra.blobstore import BlobStore
from infra.call_metrics import DOCUMENTS_INGESTED
from infra.db.knowledge_repo import ChunkText, DocumentRecord, KnowledgeRepository, LockedDocument
from infra.embeddings import Embedder
from infra.parsing import parse_document

from .errors import from_keel_error
from .heartbeat import heartbeating

log = structlog.get_logger(__name__)


def _check_writable(doc: DocumentRecord | None, version: int | None) -> DocumentRecord:
    """``doc`` if a run ingesting ``version`` of it may still write (not deleted, not
    replaced by a newer upload); ``version`` ``None`` means whatever version is current."""
    if doc is None or doc.status == "deleting":
        raise ApplicationError(
            "the document was deleted while it was indexed",
            type=ErrorCode.DOCUMENT_NOT_FOUND,
            non_retryable=True,
        )
    if version is not None and doc.version != version:
        raise ApplicationError(
            f"version {version} of the document was replaced by version {doc.version}",
            type=ErrorCode.DOCUMENT_SUPERSEDED,
            non_retryable=True,
        )
    return doc


def _current(locked: LockedDocument | None, version: int | None) -> LockedDocument:
    """The locked row, if a run ingesting ``version`` may still write for it."""
    if locked is None:
        _check_writable(None, version)
        raise AssertionError("unreachable")
    _check_writable(locked.record, version)
    return locked


@dataclass(frozen=True)
class IngestConfig:
    max_pages: int
    chunk_chars: int
    chunk_overlap: int
    embed_batch_size: int
    max_docx_part_bytes: int
    parse_timeout_s: float
    max_chunks_per_document: int


class IngestActivities:
    def __init__(
        self,
        *,
        repo: KnowledgeRepository,
        blobs: BlobStore,
        embedder: Embedder,
        index: VectorIndex,
        config: IngestConfig,
    ) -> None:
        self._repo = repo
        self._blobs = blobs
        self._embedder = embedder
        self._index = index
        self._config = config

    async def _document(self, doc_id: str) -> DocumentRecord:
        doc = await self._repo.document(doc_id)
        if doc is None or doc.status == "deleting":
            raise ApplicationError(
                "the document no longer exists", type=ErrorCode.DOCUMENT_NOT_FOUND, non_retryable=True
            )
        return doc

    async def _ensure_index(self) -> None:
        """The collection exists before any write (a share or delete may come before the first index)."""
        await self._index.ensure_collection(await self._embedder.ensure_dimension())

    @activity.defn
    async def parse_document(self, inp: IngestDocumentInput) -> ParseResult:
        doc = await self._document(inp.document_id)
        _check_writable(doc, inp.version)
        data = await self._blobs.get(doc.blob_key)
        cfg = self._config
        try:
            parsed = await heartbeating(
                asyncio.to_thread(
                    parse_document,
                    data,
                    filename=doc.filename,
                    content_type=doc.content_type,
                    max_pages=cfg.max_pages,
                    max_part_bytes=cfg.max_docx_part_bytes,
                    timeout_s=cfg.parse_timeout_s,
                )
            )
        except KeelError as err:
            raise from_keel_error(err) from err
        chunks = chunk_document(
            parsed.pages, doc_type=parsed.doc_type, max_chars=cfg.chunk_chars, overlap_chars=cfg.chunk_overlap
        )
        if not chunks:
            raise from_keel_error(KeelError(ErrorCode.DOCUMENT_EMPTY, "the document contains no text"))
        if len(chunks) > cfg.max_chunks_per_document:
            raise from_keel_error(
                KeelError(
                    ErrorCode.DOCUMENT_TOO_MANY_CHUNKS,
                    f"The document makes {len(chunks)} chunks; at most {cfg.max_chunks_per_document} "
                    "can be indexed per document. Split it into smaller files.",
                )
            )
        await self._ensure_index()
        async with self._repo.locked_document(doc.id) as locked:
            await _current(locked, doc.version).replace_chunks(chunks)
            # The previous version's vectors go with its texts (search answers only the
            # current version's chunks in any case).
            await self._index.delete_document(doc.id)
        log.info(
            "ingest.parsed",
            document_id=doc.id,
            version=doc.version,
            pages=parsed.page_count,
            chunks=len(chunks),
        )
        return ParseResult(
            version=doc.version,
            chunk_count=len(chunks),
            page_count=parsed.page_count,
            doc_type=parsed.doc_type,
            title=parsed.title,
        )

    @activity.defn
    async def index_chunks(self, inp: IngestDocumentInput) -> IndexResult:
        doc = await self._document(inp.document_id)
        await self._ensure_index()
        details = activity.info().heartbeat_details
        start = int(details[0]) if details else 0
        if start == 0:
            # A fresh attempt: drop vectors of an earlier attempt -- under the lock and only
            # while this version is current, so an overtaken run never drops a newer one's.
            async with self._repo.locked_document(doc.id) as locked:
                _current(locked, inp.version)
                await self._index.delete_document(doc.id)
        indexed = start
        while True:
            batch = await self._repo.chunks(doc.id, start=start, limit=self._config.embed_batch_size)
            if not batch:
                break
            vectors = await heartbeating(
                self._embedder.embed_documents([c.text for c in batch]), details=start
            )
            await self._upsert_with_current_acl(doc.id, batch, vectors, version=inp.version)
            start = batch[-1].chunk_index + 1
            indexed += len(batch)
            activity.heartbeat(start)
        return IndexResult(indexed=indexed)

    async def _upsert_with_current_acl(
        self, doc_id: str, batch: list[ChunkText], vectors: list[list[float]], *, version: int | None
    ) -> None:
        """Write one batch stamped with the ACL as it is *now*, under the document's lock.

        The embedding (slow) happens before the lock; reading the ACL and writing the
        points happen inside it, so a share, unshare or delete that ran meanwhile is
        either seen here or runs after this write and rewrites (or removes) it. A batch
        of a version that a newer upload replaced is never written.
        """
        async with self._repo.locked_document(doc_id) as locked:
            doc = _current(locked, version).record
            await self._index.upsert(
                [
                    IndexPoint(
                        id=point_id(doc.id, c.chunk_index),
                        vector=vector,
                        payload=ChunkPayload(
                            doc_id=doc.id,
                            kb_id=doc.kb_id,
                            source=doc.source,
                            owner_type=doc.owner_type,
                            owner_id=doc.owner_id,
                            visibility=doc.visibility,
                            shared_with=doc.shared_with,
                            created_at=doc.created_at.isoformat(),
                            doc_type=doc.doc_type or "",
                            chunk_index=c.chunk_index,
                            title=doc.title,
                            text=c.text,
                            page=c.page,
                            strategy=c.strategy,
                            version=doc.version,
                        ),
                    )
                    for c, vector in zip(batch, vectors, strict=True)
                ]
            )

    @activity.defn
    async def mark_document(self, inp: MarkDocumentInput) -> None:
        await self._repo.mark_document(
            inp.document_id,
            status=inp.status,
            version=inp.version,
            chunk_count=inp.chunk_count,
            page_count=inp.page_count,
            doc_type=inp.doc_type,
            title=inp.title,
            error_code=inp.error_code,
            error_message=inp.error_message,
        )
        if inp.status == "failed":
            await self._repo.record_failure(
                kind="ingest",
                resource_id=inp.document_id,
                workflow_id=inp.workflow_id,
                error_code=inp.error_code or ErrorCode.INTERNAL,
                error_message=inp.error_message or "ingestion failed",
            )
        else:
            await self._repo.resolve_failures(kind="ingest", resource_id=inp.document_id)
        DOCUMENTS_INGESTED.labels(outcome=inp.status).inc()  # after the writes: once per success

    @activity.defn
    async def delete_document(self, inp: DeleteDocumentInput) -> None:
        await self._ensure_index()
        async with self._repo.locked_document(inp.document_id) as locked:
            if locked is None:
                return  # already gone: deleting is idempotent
            # Under the lock: once it is released, no indexing batch writes vectors again.
            await locked.mark_deleting()
            await self._index.delete_document(inp.document_id)
            doc = locked.record
        await self._blobs.delete(doc.blob_key)
        await self._repo.delete_document(doc.id)
        await self._repo.resolve_failures(kind="ingest", resource_id=doc.id)

    @activity.defn
    async def update_document_acl(self, inp: DocumentAclInput) -> DocumentAclResult:
        # Postgres and the vectors change under one lock, so concurrent changes (and the
        # batches of a running ingestion) apply in one order; if the vector write fails
        # the Postgres change rolls back and the retry does both again.
        await self._ensure_index()
        async with self._repo.locked_document(inp.document_id) as locked:
            if locked is None or locked.record.status == "deleting":
                return DocumentAclResult(document_id=inp.document_id, shared_with=[])
            shared = await locked.change_shares(add=inp.add, remove=inp.remove)
            await self._index.set_document_acl(
                inp.document_id, shared_with=shared, visibility=locked.record.visibility
            )
        return DocumentAclResult(document_id=inp.document_id, shared_with=shared)
