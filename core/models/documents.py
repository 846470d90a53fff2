"""What a client reads of a document and of a failed operation.

These are the public fields only. The Postgres records (``infra.db.knowledge_repo``)
extend them with what the API must not show (blob key, hash, source, creator); a
route returns the record and its ``response_model`` (one of these) serialises just
the public fields.

A stored ``error_code``/``error_message`` is serialised as a client may see it
(:func:`core.errors.public_error`): a code Keel does not know (an exception class
name) and its text become a generic ``internal_error``. The attributes keep what
was stored; only what is written out is filtered.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_serializer

from core.errors import public_error


def _public_message(code: str | None, message: str | None) -> str | None:
    if code is None:
        return message
    public_code, public_message = public_error(code, message or "")
    return message if public_code == code else public_message


class DocumentView(BaseModel):
    id: str
    kb_id: str
    title: str
    filename: str
    content_type: str | None
    doc_type: str | None
    size_bytes: int
    owner_type: str
    owner_id: str
    visibility: str
    shared_with: list[str]
    version: int = Field(default=1, description="1, +1 for each new upload under the document's filename")
    status: str = Field(description="processing | ready | failed")
    error_code: str | None
    error_message: str | None
    chunk_count: int
    page_count: int
    created_at: datetime
    updated_at: datetime

    @field_serializer("error_code")
    def _public_code(self, code: str | None) -> str | None:
        return None if code is None else public_error(code, "")[0]

    @field_serializer("error_message")
    def _public_text(self, message: str | None) -> str | None:
        return _public_message(self.error_code, message)


class FailedOperationView(BaseModel):
    id: str
    kind: str
    resource_id: str
    workflow_id: str
    error_code: str
    error_message: str
    status: str
    retry_count: int
    created_at: datetime
    updated_at: datetime

    @field_serializer("error_code")
    def _public_code(self, code: str) -> str:
        return public_error(code, "")[0]

    @field_serializer("error_message")
    def _public_text(self, message: str) -> str:
        return public_error(self.error_code, message)[1]
