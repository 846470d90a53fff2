"""Tools and approvals as they cross Temporal boundaries: names, ids, bounded arguments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ApprovalStatus = Literal["pending", "approved", "denied", "expired"]


class ToolSpec(BaseModel):
    """One tool a session may offer the model (an allowlist entry, as policy sees it)."""

    name: str  # what the model calls: "<server name>__<tool name>"
    server_id: str
    tool: str  # the tool's own name on its server
    requires_approval: bool = False
    timeout_s: int = 30
    max_retries: int = 3
    allowed_groups: list[str] = Field(default_factory=list)
    approver_group: str | None = None
    #: False for read-only tools: they run without approval even after reading others' documents.
    side_effects: bool = True


class ContextDocument(BaseModel):
    """A document whose text was in the model's context when it proposed a tool call."""

    document_id: str
    title: str
    owner_id: str | None = None


class ToolCallRequest(BaseModel):
    """A tool call the model asked for.

    ``arguments`` is the redacted view (secret-looking values masked); when anything was
    masked, the full arguments are kept in Postgres under ``arguments_ref`` and only the
    tool call activity loads them."""

    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    arguments_ref: str | None = None


class ToolDecision(BaseModel):
    allowed: bool
    needs_approval: bool = False
    reason: str = ""


class ToolCallRecord(BaseModel):
    """What happened to one tool call (returned in the turn's ``tool_calls``)."""

    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    status: Literal["completed", "failed", "refused", "denied", "expired"]
    result: str = ""
    approval_id: str | None = None


class ApprovalView(BaseModel):
    id: str
    session_id: str
    turn_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    status: ApprovalStatus = "pending"
    approver_group: str | None = None
    #: Documents the user does not own that were in the model's context ("proposed after reading").
    context_documents: list[ContextDocument] = Field(default_factory=list)
    #: Why a human must decide, when it is not the tool's own ``requires_approval``.
    reason: str | None = None


class ApprovalDecision(BaseModel):
    """``decide_approval`` Update payload: an authorised approver's decision."""

    approval_id: str
    approved: bool
    decided_by: str
    #: How the decider is shown (a name, or a Slack mention ``<@U…>``); None: ``decided_by``.
    decided_by_name: str | None = None
    comment: str | None = None


class LoadToolsInput(BaseModel):
    agent: str = "default"
    user_id: str
    groups: list[str] = Field(default_factory=list)


class LoadToolsResult(BaseModel):
    tools: list[ToolSpec] = Field(default_factory=list)


class CallToolInput(BaseModel):
    session_id: str
    turn_id: str
    user_id: str
    spec: ToolSpec
    call: ToolCallRequest
    idempotency_key: str
    #: Documents the user does not own that were in the model's context (for the audit row).
    context_documents: list[ContextDocument] = Field(default_factory=list)


class CallToolResult(BaseModel):
    ok: bool
    content: str


class RecordApprovalInput(BaseModel):
    approval: ApprovalView
    requester: str
    timeout_s: int
    requester_api_key_id: str | None = None


class ToolStepInput(BaseModel):
    """Persist the model's tool calls and their results so the next model call sees them."""

    session_id: str
    turn_id: str
    step: int
    calls: list[ToolCallRequest]
    results: list[ToolCallRecord]


class ResolveApprovalInput(BaseModel):
    approval_id: str
    status: ApprovalStatus
    decided_by: str | None = None
    decided_by_name: str | None = None
    comment: str | None = None
    #: The full arguments of a call that will not run (denied, expired): forgotten now.
    arguments_ref: str | None = None


class RefusalInput(BaseModel):
    session_id: str
    turn_id: str
    user_id: str
    call: ToolCallRequest
    idempotency_key: str
    reason: str
