"""Request schemas of the REST API, and the public responses that wrap or compute
(docs/api.md). A response that is a stored or workflow model is that model, declared
once in ``core.models`` (``SessionSummary``, ``DocumentView``, ``ChatResponse``, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from api.text_guard import RequestModel
from core.models.documents import DocumentView, FailedOperationView
from core.models.knowledge import QueryResult
from core.models.sessions import SessionSummary, SessionTotals, TranscriptMessage, TurnSummary

_Request = RequestModel  # unknown fields and bad text (NUL, lone surrogates) are refused


# Bounds on request lists: whatever a request carries may reach a workflow's input,
# and Temporal refuses payloads of a few MB (issue 9).
MAX_KNOWLEDGE_BASE_IDS = 50
MAX_SHARE_PRINCIPALS = 100
Id = Annotated[str, Field(min_length=1, max_length=200)]
GroupName = Annotated[str, Field(min_length=1, max_length=256)]
RoleName = Annotated[str, Field(min_length=1, max_length=64)]


class DevTokenRequest(_Request):
    user_id: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._@:-]+$")
    email: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=256)
    groups: list[GroupName] = Field(default_factory=list, max_length=500)
    roles: list[RoleName] = Field(default_factory=list, max_length=50)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class ChatRequest(_Request):
    message: str = Field(
        min_length=1,
        pattern=r"\S",
        description="Not blank (`422 empty_message`); at most KEEL_CHAT_MAX_MESSAGE_CHARS characters "
        "(`413 message_too_large`)",
    )
    session_id: str | None = Field(default=None, max_length=64)
    knowledge_base_ids: list[Id] | None = Field(default=None, max_length=MAX_KNOWLEDGE_BASE_IDS)
    agent: str | None = Field(
        default=None,
        max_length=40,
        description="Agent definition for a new session (default: KEEL_DEFAULT_AGENT)",
    )


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    next_before: datetime | None = Field(
        default=None, description="Pass as `before` to get the next (older) page; null when there is none."
    )


class SessionRename(_Request):
    """``PATCH /sessions/{id}``: the session's new title (one line; longer ones are cut at 80)."""

    title: str = Field(min_length=1, max_length=200, pattern=r"\S")


class SessionDetail(SessionTotals):
    messages: list[TranscriptMessage]
    #: Every turn of the session, oldest first, with how it ended (``running`` while it runs).
    turns: list[TurnSummary] = Field(default_factory=list)


class CancelAccepted(BaseModel):
    session_id: str
    turn_id: str
    status: Literal["cancelling"] = "cancelling"


class HealthStatus(BaseModel):
    status: Literal["ok", "starting", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------- knowledge
class KnowledgeBaseView(BaseModel):
    id: str
    name: str = Field(
        description="'Personal' for the caller's own; another person's personal knowledge base "
        'is named after its owner ("Alice Smith\'s personal", else "Personal (email or user id)")'
    )
    description: str
    owner_type: str
    personal: bool
    can_upload: bool


class KnowledgeBaseList(BaseModel):
    knowledge_bases: list[KnowledgeBaseView]


class CreateKnowledgeBaseRequest(_Request):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class DocumentAccepted(BaseModel):
    """One document per file in a knowledge base: new bytes make a new document (or,
    under a filename already there, that document's next version); bytes already
    there answer the existing document unchanged."""

    document_id: str
    status: str = Field(
        description="processing (a new document or a new version); for bytes already in the "
        "knowledge base, that document's current status (processing | ready | failed)"
    )
    version: int = Field(
        default=1, description="the document's version: 1, +1 for each new upload of its name"
    )
    duplicate: bool = Field(
        default=False,
        description="true when the bytes were already in this knowledge base (nothing is ingested)",
    )


class DocumentList(BaseModel):
    documents: list[DocumentView]


class ShareRequest(_Request):
    """At most ``MAX_SHARE_PRINCIPALS`` users and groups together."""

    user_ids: list[Id] = Field(default_factory=list, max_length=MAX_SHARE_PRINCIPALS)
    group_ids: list[Id] = Field(default_factory=list, max_length=MAX_SHARE_PRINCIPALS)

    @model_validator(mode="after")
    def _bounded(self) -> ShareRequest:
        if len(self.user_ids) + len(self.group_ids) > MAX_SHARE_PRINCIPALS:
            raise ValueError(f"share with at most {MAX_SHARE_PRINCIPALS} users and groups per request")
        return self


class ShareResponse(BaseModel):
    document_id: str
    shared_with: list[str]


class QueryRequest(_Request):
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=10, ge=1, le=100)


class QueryResponse(BaseModel):
    results: list[QueryResult]


class BatchAccepted(BaseModel):
    batch_id: str
    document_ids: list[str]


class FailedOperationList(BaseModel):
    failed_operations: list[FailedOperationView]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code (see docs/api.md)")
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing, expired or invalid credentials",
        404: "Not found (or not yours)",
        409: "Stale request",
        413: "Message too large",
        422: "Invalid request",
        429: "Too many requests (see Retry-After)",
        500: "Internal error",
        503: "A dependency is unavailable (see Retry-After)",
        504: "Timed out",
    }.items()
}


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_REFUSALS: dict[str, dict[str, object]] = {
    "403": {
        "description": "Not allowed: the operation's permission is not granted (`forbidden`; "
        "`insufficient_scope` for an API key), an application token holds no Keel role, or a "
        "cookie request lacks the sign-in's `X-CSRF-Token` (`csrf_failed`)",
        "content": _ERROR_CONTENT,
    },
    "405": {
        "description": "The path exists, the method does not (`method_not_allowed`)",
        "headers": {"Allow": {"description": "The methods this path serves", "schema": {"type": "string"}}},
        "content": _ERROR_CONTENT,
    },
    "422": {
        "description": "Invalid request (`invalid_request`, `invalid_text`, ...)",
        "content": _ERROR_CONTENT,
    },
}


def document_refusals(document: dict[str, Any]) -> None:
    """Every operation documents 405 and 422 (a NUL in a query string is refused on any
    route); every operation that needs a credential documents 403. In place."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            statuses = ["405", "422"] + (["403"] if "security" in operation else [])
            for status in statuses:
                responses[status] = _REFUSALS[status]
            operation["responses"] = dict(sorted(responses.items()))
