"""Payloads that cross Temporal boundaries for a chat session.

Fields are added, never renamed. Payloads carry ids and bounded texts (a user
message is capped by the update validator; prompts are rendered inside the LLM
activity from the transcript in Postgres), never rendered prompts or secrets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.models.budget import BudgetWarning
from core.models.tools import ApprovalView, ToolCallRecord, ToolCallRequest

TurnStatus = Literal["completed", "awaiting_approval", "failed", "cancelled"]


class SessionLimits(BaseModel):
    idle_timeout_s: int = 24 * 3600
    approval_timeout_s: int = 3 * 24 * 3600
    max_tool_steps: int = 8
    max_message_chars: int = 32_000
    max_request_age_s: int = 180
    max_queued_turns: int = 4


class SessionCarry(BaseModel):
    """What a continued-as-new run inherits: a summary, not the transcript."""

    turn_count: int = 0
    recent_turn_ids: list[str] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_turn_at: datetime | None = None


class ActivityQueues(BaseModel):
    """Where a chat turn sends the activities that run in their own worker pools
    (bulkheads, docs/operations.md). ``None``: the session workflow's own task queue."""

    retrieval: str | None = None
    tools: str | None = None


class ChatSessionInput(BaseModel):
    session_id: str
    user_id: str
    agent: str = "default"
    fallback_model: str | None = None
    limits: SessionLimits = Field(default_factory=SessionLimits)
    queues: ActivityQueues = Field(default_factory=ActivityQueues)
    carry: SessionCarry | None = None


class ChatSessionOutput(BaseModel):
    session_id: str
    turn_count: int
    reason: Literal["idle", "deleted"]


class AudienceMember(BaseModel):
    """A person who will see the answer, resolved to a Keel user (ids as the identity provider has them)."""

    user_id: str = Field(min_length=1, max_length=256)
    groups: list[str] = Field(default_factory=list, max_length=500)


class Audience(BaseModel):
    """Everyone who will see the answer; retrieval uses only chunks every member may read.

    The asker always counts as a member, whether or not ``members`` lists them
    (docs/knowledge.md, "Audience rule (Slack channels)")."""

    members: list[AudienceMember] = Field(default_factory=list, max_length=1000)
    #: people present whom Keel could not resolve: they read org documents only
    unresolved_members: int = Field(default=0, ge=0)


class TurnRequest(BaseModel):
    """One user message, delivered as the ``send_message`` Update."""

    turn_id: str
    user_id: str
    message: str
    submitted_at: datetime
    knowledge_base_ids: list[str] = Field(default_factory=list)
    #: The caller's group ids at request time (the ACL principal set is computed per turn).
    groups: list[str] = Field(default_factory=list, max_length=500)
    #: False when the caller can read no document at all: the turn skips knowledge search.
    search_knowledge: bool = True
    #: The API key the message came with (None for people signed in): it may not approve its own calls.
    api_key_id: str | None = None
    #: Who will see the answer (a Slack channel or thread); None: the asker alone (their own permissions).
    audience: Audience | None = None


class Citation(BaseModel):
    document_id: str
    chunk_id: str
    title: str
    snippet: str
    score: float
    page: int | None = None
    chunk_index: int = 0
    #: The document's owner (``user:<id>``, ``org``, ...); None when unknown (treated as not the user's).
    owner_id: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    citations: list[Citation] = Field(default_factory=list)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class TurnError(BaseModel):
    code: str
    message: str


class ChatResponse(BaseModel):
    """A finished turn as a client reads it (``POST /chat``, the ``turn.completed`` event)."""

    session_id: str
    turn_id: str
    status: TurnStatus
    message: AssistantMessage
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    approvals: list[ApprovalView] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None
    error: TurnError | None = None
    #: Set when the answer is not a model's: ``llm_not_configured``.
    notice: str | None = None
    #: Present when the caller's token usage reached the warning ratio of a budget (80 % by default).
    budget_warning: BudgetWarning | None = None


class TurnResult(ChatResponse):
    """What a turn's workflow returns and Postgres stores: the public ``ChatResponse``, with
    ``error`` as raised (the API shows it through ``core.errors.public_error``)."""


class DeleteSessionRequest(BaseModel):
    user_id: str


class DeleteSessionResult(BaseModel):
    session_id: str
    deleted: bool


class CancelTurn(BaseModel):
    turn_id: str


class SessionState(BaseModel):
    """Query result: what the session workflow is doing now."""

    session_id: str
    user_id: str
    turn_count: int
    active_turn_id: str | None
    queued_turns: int
    deleted: bool


# --- activity inputs / outputs --------------------------------------------


class BeginTurnInput(BaseModel):
    session_id: str
    user_id: str
    turn_id: str
    message: str
    agent: str = "default"


class RetrieveInput(BaseModel):
    agent: str = "default"
    session_id: str
    turn_id: str
    user_id: str
    #: The search text: the start of the user message (embedding models read ~256 tokens).
    query: str = ""
    groups: list[str] = Field(default_factory=list)
    knowledge_base_ids: list[str] = Field(default_factory=list)
    #: The turn's audience: only chunks every member (and the asker) may read are searched.
    audience: Audience | None = None


class RetrieveResult(BaseModel):
    citations: list[Citation] = Field(default_factory=list)


class LlmCallInput(BaseModel):
    agent: str = "default"
    session_id: str
    turn_id: str
    step: int = 0
    model_override: str | None = None
    #: Retrieved chunks to ground the answer on (texts are loaded in the activity).
    context: list[Citation] = Field(default_factory=list)
    #: Knowledge search failed: answer without it and say so.
    retrieval_unavailable: bool = False
    #: Model-facing names of the tools offered in this step (schemas load in the activity).
    tool_names: list[str] = Field(default_factory=list)
    #: The step's text may already have been streamed by an earlier call (a fallback model).
    restream: bool = False
    #: The output allowance granted by the token budget (None: the agent's or the settings' default).
    max_tokens: int | None = Field(default=None, ge=1)
    #: Tokens reserved for this call (prompt bound + output): the call checks its prompt still fits.
    token_allowance: int | None = Field(default=None, ge=1)
    #: The budget reservation made for this call: its rendered prompt is reused, not rendered again.
    reservation_id: str | None = None


class LlmCallResult(BaseModel):
    content: str
    finish_reason: str | None = None
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    configured: bool = True
    #: ``llm_not_configured`` / ``retrieval_only`` when the answer is not a model's.
    notice: str | None = None
    #: Tool calls the model asked for (the workflow decides what runs).
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)


class CompleteTurnInput(BaseModel):
    session_id: str
    user_id: str
    turn_id: str
    result: TurnResult


class DeleteSessionInput(BaseModel):
    session_id: str
    user_id: str


class EndSessionInput(BaseModel):
    """The workflow closed a conversation on its own (idle timeout): audited once per run."""

    session_id: str
    user_id: str
    run_id: str
    reason: str
    turn_count: int
