"""Request and public response schemas of the REST API (DESIGN.md §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models.chat import AssistantMessage, TurnError, TurnStatus, Usage


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DevTokenRequest(_Request):
    user_id: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._@:-]+$")
    email: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=256)
    groups: list[str] = Field(default_factory=list, max_length=500)
    roles: list[str] = Field(default_factory=list, max_length=50)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class ChatRequest(_Request):
    message: str
    session_id: str | None = Field(default=None, max_length=64)
    knowledge_base_ids: list[str] | None = None


class ChatResponse(BaseModel):
    session_id: str
    turn_id: str
    status: TurnStatus
    message: AssistantMessage
    tool_calls: list[dict[str, object]] = Field(default_factory=list)
    approvals: list[dict[str, object]] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None
    error: TurnError | None = None
    notice: str | None = None


class SessionSummary(BaseModel):
    id: str
    title: str
    agent: str
    turn_count: int
    created_at: datetime
    updated_at: datetime


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    next_before: datetime | None = Field(
        default=None, description="Pass as `before` to get the next (older) page; null when there is none."
    )


class TranscriptMessage(BaseModel):
    id: int
    turn_id: str
    role: str
    content: str
    created_at: datetime


class SessionDetail(SessionSummary):
    prompt_tokens: int
    completion_tokens: int
    messages: list[TranscriptMessage]


class HealthStatus(BaseModel):
    status: Literal["ok", "starting", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


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
