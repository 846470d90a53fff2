"""Payloads of the ingestion workflows: ids and small counters, never bytes or texts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class IngestDocumentInput(BaseModel):
    document_id: str
    #: The version this run ingests: ``None`` when the run starts (the parse reads the
    #: current one); the later steps carry the parsed version and stop
    #: (``document_superseded``) once the document has moved on to a newer one.
    version: int | None = None


class ParseResult(BaseModel):
    version: int = 1
    chunk_count: int
    page_count: int
    doc_type: str
    title: str | None = None


class IndexResult(BaseModel):
    indexed: int


class IngestDocumentOutput(BaseModel):
    document_id: str
    status: Literal["ready", "failed", "deleted", "superseded"]
    chunk_count: int = 0
    error_code: str | None = None
    error_message: str | None = None


class MarkDocumentInput(BaseModel):
    document_id: str
    status: Literal["ready", "failed"]
    #: Marks only this version (a run overtaken by a newer upload changes nothing).
    version: int | None = None
    chunk_count: int = 0
    page_count: int = 0
    doc_type: str | None = None
    title: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    workflow_id: str


class BatchIngestInput(BaseModel):
    batch_id: str
    document_ids: list[str]
    #: The version of each document the batch ingests (absent: the current one).
    versions: dict[str, int] = Field(default_factory=dict)
    max_concurrency: int = Field(default=4, ge=1)


class BatchStatus(BaseModel):
    """A batch ingestion's progress as a client reads it (``GET /ingestions/{id}``)."""

    batch_id: str
    total: int
    processing: int
    ready: int
    failed: int
    done: bool
    failed_document_ids: list[str]


class BatchProgress(BatchStatus):
    """The batch workflow's ``progress`` query and result: the public ``BatchStatus``."""


class DeleteDocumentInput(BaseModel):
    document_id: str


class DocumentAclInput(BaseModel):
    document_id: str
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class DocumentAclResult(BaseModel):
    document_id: str
    shared_with: list[str]
