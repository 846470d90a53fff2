"""The direct knowledge-base query (``POST /knowledge-bases/{id}/query``) as it crosses into
the worker: the embedding model and the vector index live there, never in the API."""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.models.knowledge import ScoredChunk
from core.policy.acl import AclFilter


class KnowledgeQueryInput(BaseModel):
    """What to search: the ACL filter the API computed from the principal, the text, how many hits."""

    acl: AclFilter
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(ge=1, le=100)


class KnowledgeQueryResult(BaseModel):
    """The ranked, still-readable chunks: at most ``top_k`` (≤ 100) chunks of bounded text."""

    chunks: list[ScoredChunk] = Field(default_factory=list)
