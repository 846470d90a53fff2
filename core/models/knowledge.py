"""Knowledge-base payloads: what every chunk in the vector index carries.

The payload is the one docs/knowledge.md (Access control) describes. ``owner_id``
and every entry of ``shared_with`` are prefixed principal strings (``user:<id>``,
``group:<id>``, ``dept:<id>``, ``org``) so ids of different kinds never collide; the validators refuse a bare
id, because a bare id would silently make a chunk unreadable to its owner.

Point ids are deterministic (:func:`point_id`), so re-indexing a document
overwrites its chunks instead of duplicating them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Source = Literal["manual", "upload", "sync"]
OwnerType = Literal["org", "department", "user"]
Visibility = Literal["private", "shared"]

# Fixed namespace for chunk point ids: never change it (ids already stored would no longer match).
CHUNK_NAMESPACE = uuid.UUID("6f2b8a52-3c0e-5d7e-9a41-7b1f0c3e8d25")

#: The principal prefix an ``owner_id`` must carry for each ``owner_type``.
OWNER_PREFIX: dict[str, str] = {"org": "org", "department": "dept:", "user": "user:"}
#: The prefixes an entry of ``shared_with`` may carry (user and group ids).
SHARE_PREFIXES: tuple[str, ...] = ("user:", "group:")


def point_id(doc_id: str, chunk_index: int) -> str:
    """The vector-index id of chunk ``chunk_index`` of ``doc_id`` (a UUID string, stable)."""
    if chunk_index < 0:
        raise ValueError("chunk_index must be >= 0")
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{chunk_index}"))


def check_owner(owner_type: str, owner_id: str) -> None:
    """Raise ``ValueError`` unless ``owner_id`` is a principal of the kind ``owner_type`` names."""
    prefix = OWNER_PREFIX[owner_type]
    if owner_type == "org":
        if owner_id != "org":
            raise ValueError("owner_id must be 'org' when owner_type is 'org'")
    elif not owner_id.startswith(prefix) or len(owner_id) == len(prefix):
        raise ValueError(f"owner_id must look like '{prefix}<id>' when owner_type is {owner_type!r}")


def check_shared_with(shared_with: list[str]) -> list[str]:
    """Validate and de-duplicate (order kept) a ``shared_with`` list."""
    for entry in shared_with:
        if not entry.startswith(SHARE_PREFIXES) or entry in SHARE_PREFIXES:
            raise ValueError(f"shared_with entries must be 'user:<id>' or 'group:<id>', got {entry!r}")
    return list(dict.fromkeys(shared_with))


class ChunkPayload(BaseModel):
    """The payload of one chunk in the vector index (the ACL fields plus retrieval fields)."""

    doc_id: str = Field(min_length=1)
    kb_id: str = Field(min_length=1)
    source: Source
    owner_type: OwnerType
    owner_id: str
    visibility: Visibility = "private"
    shared_with: list[str] = Field(default_factory=list)
    created_at: str  # ISO 8601
    doc_type: str
    chunk_index: int = Field(ge=0)
    title: str = ""
    text: str
    page: int | None = None
    strategy: str
    #: The document version these chunks were parsed from; a search answers only
    #: chunks of the document's current version (``infra.knowledge.search_readable``).
    version: int = Field(default=1, ge=1)

    @field_validator("shared_with")
    @classmethod
    def _shared_with(cls, value: list[str]) -> list[str]:
        return check_shared_with(value)

    @field_validator("created_at")
    @classmethod
    def _iso(cls, value: str) -> str:
        datetime.fromisoformat(value)  # raises ValueError when it is not ISO 8601
        return value

    @model_validator(mode="after")
    def _owner(self) -> ChunkPayload:
        check_owner(self.owner_type, self.owner_id)
        return self


class IndexPoint(BaseModel):
    """One chunk to index: its id (use :func:`point_id`), dense vector and payload."""

    id: str
    vector: list[float] = Field(min_length=1)
    payload: ChunkPayload

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))  # canonical lower-case form; raises on anything else


class QueryResult(BaseModel):
    """A search hit as a client reads it (``POST /knowledge-bases/{id}/query``). ``score``
    ranks: the cosine similarity (dense) or the fused RRF score (hybrid, rank-based: it
    says nothing about relevance)."""

    chunk_id: str
    doc_id: str
    kb_id: str
    title: str
    text: str
    page: int | None
    chunk_index: int
    score: float


class ScoredChunk(QueryResult):
    """A search hit as the index answers it. ``similarity`` is always the cosine similarity
    of the chunk's dense vector to the query's, so a relevance floor
    (``KEEL_RETRIEVAL_MIN_SCORE``) can be applied to hybrid hits too."""

    similarity: float | None = None
    owner_id: str = ""  # "user:<id>" or "org": whose document this is (fixed at upload)
    version: int = 1  # the document version the chunk belongs to
