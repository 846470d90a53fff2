"""Payloads of the ingestion workflows: ids and small counters, never bytes or texts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class IngestDocumentInput(BaseModel):
    document_id: str


class ParseResult(BaseModel):
    chunk_count: int
    page_count: int
    doc_type: str
    title: str | None = None


class IndexResult(BaseModel):
    indexed: int


class IngestDocumentOutput(BaseModel):
    document_id: str
    status: Literal["ready", "failed", "deleted"]
    chunk_count: int = 0
    error_code: str | None = None
    error_message: str | None = None


class MarkDocumentInput(BaseModel):
    document_id: str
    status: Literal["ready", "failed"]
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
    max_concurrency: int = Field(default=4, ge=1)


class BatchProgress(BaseModel):
    batch_id: str
    total: int
    processing: int
    ready: int
    failed: int
    done: bool
    failed_document_ids: list[str] = Field(default_factory=list)


class DeleteDocumentInput(BaseModel):
    document_id: str


class DocumentAclInput(BaseModel):
    document_id: str
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class DocumentAclResult(BaseModel):
    document_id: str
    shared_with: list[str]
