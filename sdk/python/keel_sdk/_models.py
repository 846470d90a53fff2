"""Keel API models, generated from docs/openapi.json by sdk/python/generate.py.

Do not edit: change the API, run ``make openapi sdk``; tests/sdk/test_models_in_sync.py
fails when this file and the spec disagree."""

# ruff: noqa: E501

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import TypeAliasType


class AgentView(BaseModel):
    name: Annotated[str, Field(title="Name")]
    version: Annotated[str, Field(title="Version")]
    revision: Annotated[str, Field(title="Revision")]
    description: Annotated[str, Field(title="Description")]
    step_limit: Annotated[int, Field(title="Step Limit")]


class ApiKeyCreated(BaseModel):
    id: Annotated[str, Field(title="Id")]
    name: Annotated[str, Field(title="Name")]
    prefix: Annotated[str, Field(title="Prefix")]
    """
    The key's first characters, to tell keys apart
    """
    scopes: Annotated[list[str], Field(title="Scopes")]
    expires_at: Annotated[AwareDatetime, Field(title="Expires At")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    rotated_at: Annotated[AwareDatetime | None, Field(title="Rotated At")]
    last_used_at: Annotated[AwareDatetime | None, Field(title="Last Used At")]
    revoked_at: Annotated[AwareDatetime | None, Field(title="Revoked At")]
    status: Annotated[str, Field(title="Status")]
    """
    active | expired | revoked
    """
    key: Annotated[str, Field(title="Key")]
    """
    The key itself: shown only in this response
    """


class ApiKeyView(BaseModel):
    id: Annotated[str, Field(title="Id")]
    name: Annotated[str, Field(title="Name")]
    prefix: Annotated[str, Field(title="Prefix")]
    """
    The key's first characters, to tell keys apart
    """
    scopes: Annotated[list[str], Field(title="Scopes")]
    expires_at: Annotated[AwareDatetime, Field(title="Expires At")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    rotated_at: Annotated[AwareDatetime | None, Field(title="Rotated At")]
    last_used_at: Annotated[AwareDatetime | None, Field(title="Last Used At")]
    revoked_at: Annotated[AwareDatetime | None, Field(title="Revoked At")]
    status: Annotated[str, Field(title="Status")]
    """
    active | expired | revoked
    """


class AuditChainView(BaseModel):
    ok: Annotated[bool, Field(title="Ok")]
    """
    True when every link of the chain holds
    """
    rows: Annotated[int, Field(title="Rows")]
    """
    Live rows whose hash and link were checked
    """
    tombstones: Annotated[int, Field(title="Tombstones")]
    """
    Purged rows whose link was checked (their content is gone)
    """
    last_seq: Annotated[int, Field(title="Last Seq")]
    """
    The last seq checked
    """
    bad_seq: Annotated[int | None, Field(title="Bad Seq")]
    """
    The first seq whose link does not hold; null when ok
    """
    reason: Annotated[str | None, Field(title="Reason")]
    """
    Why that seq is bad (edited, missing, …); null when ok
    """
    checked_at: Annotated[AwareDatetime, Field(title="Checked At")]


AuditEvent = TypeAliasType(
    "AuditEvent",
    Annotated[
        Literal[
            "auth.login",
            "auth.login_failed",
            "auth.logout",
            "auth.token_refresh",
            "api_key.created",
            "api_key.rotated",
            "api_key.revoked",
            "access.allowed",
            "access.denied",
            "session.started",
            "session.ended",
            "tool.invoked",
            "tool.approval_decided",
            "document.uploaded",
            "document.shared",
            "document.unshared",
            "document.deleted",
            "admin.tool_added",
            "admin.tool_removed",
            "admin.tool_updated",
            "admin.knowledge_base_created",
            "admin.document_published",
            "admin.budget_set",
            "admin.budget_cleared",
            "admin.operation_retried",
            "audit.exported",
            "audit.purged",
        ],
        Field(title="AuditEvent"),
    ],
)


class AuditEventView(BaseModel):
    seq: Annotated[int, Field(title="Seq")]
    """
    Position in the hash chain (no gaps except purged rows)
    """
    id: Annotated[str, Field(title="Id")]
    occurred_at: Annotated[AwareDatetime, Field(title="Occurred At")]
    event: Annotated[str, Field(title="Event")]
    user_id: Annotated[str | None, Field(title="User Id")]
    session_id: Annotated[str | None, Field(title="Session Id")]
    trace_id: Annotated[str | None, Field(title="Trace Id")]
    request_id: Annotated[str | None, Field(title="Request Id")]
    outcome: Annotated[str, Field(title="Outcome")]
    """
    success | failure | denied
    """
    resource_type: Annotated[str | None, Field(title="Resource Type")]
    resource_id: Annotated[str | None, Field(title="Resource Id")]
    details: Annotated[dict[str, Any], Field(title="Details")]
    prev_hash: Annotated[str, Field(title="Prev Hash")]
    hash: Annotated[str, Field(title="Hash")]
    """
    HMAC-SHA256 over the row and prev_hash
    """


class BatchAccepted(BaseModel):
    batch_id: Annotated[str, Field(title="Batch Id")]
    document_ids: Annotated[list[str], Field(title="Document Ids")]


class BatchStatus(BaseModel):
    """
    A batch ingestion's progress as a client reads it (``GET /ingestions/{id}``).
    """

    batch_id: Annotated[str, Field(title="Batch Id")]
    total: Annotated[int, Field(title="Total")]
    processing: Annotated[int, Field(title="Processing")]
    ready: Annotated[int, Field(title="Ready")]
    failed: Annotated[int, Field(title="Failed")]
    done: Annotated[bool, Field(title="Done")]
    failed_document_ids: Annotated[list[str], Field(title="Failed Document Ids")]


class BodyStartIngestion(BaseModel):
    files: Annotated[list[str], Field(title="Files")]


class BodyUploadDocument(BaseModel):
    file: Annotated[
        str,
        Field(
            json_schema_extra={"contentMediaType": "application/octet-stream"},
            title="File",
        ),
    ]


DailyTokens = TypeAliasType(
    "DailyTokens", Annotated[int, Field(ge=1, le=1000000000000, title="Daily Tokens")]
)


MonthlyTokens = TypeAliasType(
    "MonthlyTokens",
    Annotated[int, Field(ge=1, le=10000000000000, title="Monthly Tokens")],
)


class BudgetRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    daily_tokens: Annotated[DailyTokens | None, Field(title="Daily Tokens")]
    monthly_tokens: Annotated[MonthlyTokens | None, Field(title="Monthly Tokens")]


class BudgetView(BaseModel):
    user_id: Annotated[str, Field(title="User Id")]
    daily_tokens: Annotated[int | None, Field(title="Daily Tokens")]
    monthly_tokens: Annotated[int | None, Field(title="Monthly Tokens")]
    source: Annotated[str, Field(title="Source")]
    updated_by: Annotated[str | None, Field(title="Updated By")] = None
    updated_at: Annotated[AwareDatetime | None, Field(title="Updated At")] = None


class BudgetWarning(BaseModel):
    """
    Usage reached the warning ratio of a budget (in the turn result and the
    ``budget.warning`` stream event).
    """

    period: Annotated[Literal["daily", "monthly"], Field(title="Period")]
    used_tokens: Annotated[int, Field(title="Used Tokens")]
    limit_tokens: Annotated[int, Field(title="Limit Tokens")]
    ratio: Annotated[float, Field(title="Ratio")]
    resets_at: Annotated[AwareDatetime, Field(title="Resets At")]
    message: Annotated[str, Field(title="Message")]


class CancelAccepted(BaseModel):
    session_id: Annotated[str, Field(title="Session Id")]
    turn_id: Annotated[str, Field(title="Turn Id")]
    status: Annotated[Literal["cancelling"], Field(title="Status")] = "cancelling"


User = TypeAliasType("User", Annotated[str, Field(max_length=256, title="User")])


SessionId = TypeAliasType("SessionId", Annotated[str, Field(max_length=64, title="Session Id")])


KnowledgeBaseId = TypeAliasType("KnowledgeBaseId", Annotated[str, Field(max_length=200, min_length=1)])


KnowledgeBaseIds = TypeAliasType(
    "KnowledgeBaseIds",
    Annotated[list[KnowledgeBaseId], Field(max_length=50, title="Knowledge Base Ids")],
)


Agent = TypeAliasType("Agent", Annotated[str, Field(max_length=40, title="Agent")])
"""
Agent definition for a new session (default: KEEL_DEFAULT_AGENT)
"""


class ChatRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    message: Annotated[str, Field(min_length=1, pattern="\\S", title="Message")]
    """
    Not blank (`422 empty_message`); at most KEEL_CHAT_MAX_MESSAGE_CHARS characters (`413 message_too_large`)
    """
    session_id: Annotated[SessionId | None, Field(title="Session Id")] = None
    knowledge_base_ids: Annotated[KnowledgeBaseIds | None, Field(title="Knowledge Base Ids")] = None
    agent: Annotated[Agent | None, Field(title="Agent")] = None
    """
    Agent definition for a new session (default: KEEL_DEFAULT_AGENT)
    """


class Citation(BaseModel):
    document_id: Annotated[str, Field(title="Document Id")]
    chunk_id: Annotated[str, Field(title="Chunk Id")]
    title: Annotated[str, Field(title="Title")]
    snippet: Annotated[str, Field(title="Snippet")]
    score: Annotated[float, Field(title="Score")]
    page: Annotated[int | None, Field(title="Page")] = None
    chunk_index: Annotated[int | None, Field(title="Chunk Index")] = 0
    owner_id: Annotated[str | None, Field(title="Owner Id")] = None


class ContentPart(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    type: Annotated[str, Field(title="Type")]
    text: Annotated[str | None, Field(title="Text")] = None


class ContextDocument(BaseModel):
    """
    A document whose text was in the model's context when it proposed a tool call.
    """

    document_id: Annotated[str, Field(title="Document Id")]
    title: Annotated[str, Field(title="Title")]
    owner_id: Annotated[str | None, Field(title="Owner Id")] = None


class CreateKnowledgeBaseRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    name: Annotated[str, Field(max_length=200, min_length=1, title="Name")]
    description: Annotated[str | None, Field(max_length=2000, title="Description")] = ""


Comment = TypeAliasType("Comment", Annotated[str, Field(max_length=2000, title="Comment")])


class DecisionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    decision: Annotated[Literal["approve", "deny"], Field(title="Decision")]
    comment: Annotated[Comment | None, Field(title="Comment")] = None


Email = TypeAliasType("Email", Annotated[str, Field(max_length=320, title="Email")])


DisplayName = TypeAliasType("DisplayName", Annotated[str, Field(max_length=256, title="Display Name")])


Group = TypeAliasType("Group", Annotated[str, Field(max_length=256, min_length=1)])


Role = TypeAliasType("Role", Annotated[str, Field(max_length=64, min_length=1)])


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    user_id: Annotated[
        str,
        Field(max_length=256, min_length=1, pattern="^[A-Za-z0-9._@:-]+$", title="User Id"),
    ]
    email: Annotated[Email | None, Field(title="Email")] = None
    display_name: Annotated[DisplayName | None, Field(title="Display Name")] = None
    groups: Annotated[list[Group] | None, Field(max_length=500, title="Groups")] = None
    roles: Annotated[list[Role] | None, Field(max_length=50, title="Roles")] = None


class DiscoveredToolView(BaseModel):
    name: Annotated[str, Field(title="Name")]
    description: Annotated[str, Field(title="Description")]
    enabled: Annotated[bool, Field(title="Enabled")]


class DocumentAccepted(BaseModel):
    """
    One document per file in a knowledge base: new bytes make a new document (or,
    under a filename already there, that document's next version); bytes already
    there answer the existing document unchanged.
    """

    document_id: Annotated[str, Field(title="Document Id")]
    status: Annotated[str, Field(title="Status")]
    """
    processing (a new document or a new version); for bytes already in the knowledge base, that document's current status (processing | ready | failed)
    """
    version: Annotated[int | None, Field(title="Version")] = 1
    """
    the document's version: 1, +1 for each new upload of its name
    """
    duplicate: Annotated[bool | None, Field(title="Duplicate")] = False
    """
    true when the bytes were already in this knowledge base (nothing is ingested)
    """


class DocumentView(BaseModel):
    id: Annotated[str, Field(title="Id")]
    kb_id: Annotated[str, Field(title="Kb Id")]
    title: Annotated[str, Field(title="Title")]
    filename: Annotated[str, Field(title="Filename")]
    content_type: Annotated[str | None, Field(title="Content Type")]
    doc_type: Annotated[str | None, Field(title="Doc Type")]
    size_bytes: Annotated[int, Field(title="Size Bytes")]
    owner_type: Annotated[str, Field(title="Owner Type")]
    owner_id: Annotated[str, Field(title="Owner Id")]
    visibility: Annotated[str, Field(title="Visibility")]
    shared_with: Annotated[list[str], Field(title="Shared With")]
    version: Annotated[int | None, Field(title="Version")] = 1
    """
    1, +1 for each new upload under the document's filename
    """
    status: Annotated[str, Field(title="Status")]
    """
    processing | ready | failed
    """
    error_code: Annotated[str | None, Field(title="Error Code")]
    error_message: Annotated[str | None, Field(title="Error Message")]
    chunk_count: Annotated[int, Field(title="Chunk Count")]
    page_count: Annotated[int, Field(title="Page Count")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    updated_at: Annotated[AwareDatetime, Field(title="Updated At")]


class ErrorDetail(BaseModel):
    code: Annotated[str, Field(title="Code")]
    """
    Stable machine-readable code (see docs/api.md)
    """
    message: Annotated[str, Field(title="Message")]
    request_id: Annotated[str, Field(title="Request Id")]


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FailedOperationView(BaseModel):
    id: Annotated[str, Field(title="Id")]
    kind: Annotated[str, Field(title="Kind")]
    resource_id: Annotated[str, Field(title="Resource Id")]
    workflow_id: Annotated[str, Field(title="Workflow Id")]
    error_code: Annotated[str, Field(title="Error Code")]
    error_message: Annotated[str, Field(title="Error Message")]
    status: Annotated[str, Field(title="Status")]
    retry_count: Annotated[int, Field(title="Retry Count")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    updated_at: Annotated[AwareDatetime, Field(title="Updated At")]


class HealthStatus(BaseModel):
    status: Annotated[Literal["ok", "starting", "unavailable"], Field(title="Status")]
    checks: Annotated[dict[str, str] | None, Field(title="Checks")] = None


class KnowledgeBaseView(BaseModel):
    id: Annotated[str, Field(title="Id")]
    name: Annotated[str, Field(title="Name")]
    """
    'Personal' for the caller's own; another person's personal knowledge base is named after its owner ("Alice Smith's personal", else "Personal (email or user id)")
    """
    description: Annotated[str, Field(title="Description")]
    owner_type: Annotated[str, Field(title="Owner Type")]
    personal: Annotated[bool, Field(title="Personal")]
    can_upload: Annotated[bool, Field(title="Can Upload")]


class MeResponse(BaseModel):
    user_id: Annotated[str, Field(title="User Id")]
    email: Annotated[str | None, Field(title="Email")]
    name: Annotated[str | None, Field(title="Name")]
    groups: Annotated[list[str], Field(title="Groups")]
    roles: Annotated[list[str], Field(title="Roles")]
    """
    Effective Keel roles (User when no role was assigned)
    """
    permissions: Annotated[list[str], Field(title="Permissions")]
    auth_method: Annotated[str, Field(title="Auth Method")]
    """
    dev | oidc | service_principal | api_key | session
    """


class ModelUsageView(BaseModel):
    model: Annotated[str, Field(title="Model")]
    prompt_tokens: Annotated[int, Field(title="Prompt Tokens")]
    completion_tokens: Annotated[int, Field(title="Completion Tokens")]
    total_tokens: Annotated[int, Field(title="Total Tokens")]
    cost: Annotated[float, Field(title="Cost")]


class PeriodUsage(BaseModel):
    period: Annotated[Literal["daily", "monthly"], Field(title="Period")]
    start: Annotated[date, Field(title="Start")]
    resets_at: Annotated[AwareDatetime, Field(title="Resets At")]
    prompt_tokens: Annotated[int, Field(title="Prompt Tokens")]
    completion_tokens: Annotated[int, Field(title="Completion Tokens")]
    total_tokens: Annotated[int, Field(title="Total Tokens")]
    cost: Annotated[float, Field(title="Cost")]
    limit_tokens: Annotated[int | None, Field(title="Limit Tokens")]
    reserved_tokens: Annotated[int, Field(title="Reserved Tokens")]
    remaining_tokens: Annotated[int | None, Field(title="Remaining Tokens")]
    by_model: Annotated[list[ModelUsageView], Field(title="By Model")]


class QueryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    query: Annotated[str, Field(max_length=4000, min_length=1, title="Query")]
    top_k: Annotated[int | None, Field(ge=1, le=100, title="Top K")] = 10


class QueryResult(BaseModel):
    """
    A search hit as a client reads it (``POST /knowledge-bases/{id}/query``). ``score``
    ranks: the cosine similarity (dense) or the fused RRF score (hybrid, rank-based: it
    says nothing about relevance).
    """

    chunk_id: Annotated[str, Field(title="Chunk Id")]
    doc_id: Annotated[str, Field(title="Doc Id")]
    kb_id: Annotated[str, Field(title="Kb Id")]
    title: Annotated[str, Field(title="Title")]
    text: Annotated[str, Field(title="Text")]
    page: Annotated[int | None, Field(title="Page")]
    chunk_index: Annotated[int, Field(title="Chunk Index")]
    score: Annotated[float, Field(title="Score")]


class SessionRename(BaseModel):
    """
    ``PATCH /sessions/{id}``: the session's new title (one line; longer ones are cut at 80).
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    title: Annotated[str, Field(max_length=200, min_length=1, pattern="\\S", title="Title")]


class SessionSummary(BaseModel):
    id: Annotated[str, Field(title="Id")]
    title: Annotated[str, Field(title="Title")]
    agent: Annotated[str, Field(title="Agent")]
    agent_version: Annotated[str | None, Field(title="Agent Version")] = None
    turn_count: Annotated[int, Field(title="Turn Count")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    updated_at: Annotated[AwareDatetime, Field(title="Updated At")]


UserId = TypeAliasType("UserId", Annotated[str, Field(max_length=200, min_length=1)])


GroupId = TypeAliasType("GroupId", Annotated[str, Field(max_length=200, min_length=1)])


class ShareRequest(BaseModel):
    """
    At most ``MAX_SHARE_PRINCIPALS`` users and groups together.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    user_ids: Annotated[list[UserId] | None, Field(max_length=100, title="User Ids")] = None
    group_ids: Annotated[list[GroupId] | None, Field(max_length=100, title="Group Ids")] = None


class ShareResponse(BaseModel):
    document_id: Annotated[str, Field(title="Document Id")]
    shared_with: Annotated[list[str], Field(title="Shared With")]


class StreamOptions(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    include_usage: Annotated[bool | None, Field(title="Include Usage")] = False


class TokenResponse(BaseModel):
    access_token: Annotated[str, Field(title="Access Token")]
    token_type: Annotated[Literal["bearer"], Field(title="Token Type")] = "bearer"
    expires_in: Annotated[int, Field(title="Expires In")]


class ToolCallRecord(BaseModel):
    """
    What happened to one tool call (returned in the turn's ``tool_calls``).
    """

    call_id: Annotated[str, Field(title="Call Id")]
    name: Annotated[str, Field(title="Name")]
    arguments: Annotated[dict[str, Any] | None, Field(title="Arguments")] = None
    status: Annotated[
        Literal["completed", "failed", "refused", "denied", "expired"],
        Field(title="Status"),
    ]
    result: Annotated[str | None, Field(title="Result")] = ""
    approval_id: Annotated[str | None, Field(title="Approval Id")] = None


ApproverGroup = TypeAliasType(
    "ApproverGroup",
    Annotated[str, Field(max_length=256, min_length=1, title="Approver Group")],
)


AllowedGroup = TypeAliasType("AllowedGroup", Annotated[str, Field(max_length=256, min_length=1)])


class ToolServerPatch(BaseModel):
    """
    The fields to change (at least one); omitted fields stay as they are. Only
    ``approver_group`` may be null (no approver group: the requester decides).
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    requires_approval: Annotated[bool | None, Field(title="Requires Approval")] = None
    approver_group: Annotated[ApproverGroup | None, Field(title="Approver Group")] = None
    allowed_groups: Annotated[list[AllowedGroup] | None, Field(max_length=100, title="Allowed Groups")] = None
    timeout_s: Annotated[int | None, Field(ge=1, le=600, title="Timeout S")] = None
    max_retries: Annotated[int | None, Field(ge=0, le=10, title="Max Retries")] = None
    enabled: Annotated[bool | None, Field(title="Enabled")] = None
    side_effects: Annotated[bool | None, Field(title="Side Effects")] = None


Command = TypeAliasType("Command", Annotated[str, Field(max_length=500, title="Command")])


Arg = TypeAliasType("Arg", Annotated[str, Field(max_length=2000)])


EnvAdditionalProperty = TypeAliasType("EnvAdditionalProperty", Annotated[str, Field(max_length=8000)])


Url = TypeAliasType("Url", Annotated[str, Field(max_length=2000, title="Url")])


HeadersSecret = TypeAliasType("HeadersSecret", Annotated[str, Field(max_length=200, title="Headers Secret")])


EnabledTool = TypeAliasType("EnabledTool", Annotated[str, Field(max_length=200, min_length=1)])


EnabledTools = TypeAliasType(
    "EnabledTools",
    Annotated[list[EnabledTool], Field(max_length=500, title="Enabled Tools")],
)


class ToolServerRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    name: Annotated[
        str,
        Field(
            max_length=40,
            min_length=1,
            pattern="^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$",
            title="Name",
        ),
    ]
    transport: Annotated[Literal["stdio", "http"], Field(title="Transport")]
    """
    `stdio` needs `command`; `http` needs `url` (an allowed host)
    """
    command: Annotated[Command | None, Field(title="Command")] = None
    args: Annotated[list[Arg] | None, Field(max_length=100, title="Args")] = None
    env: Annotated[
        dict[Annotated[str, StringConstraints(min_length=1, max_length=200)], EnvAdditionalProperty] | None,
        Field(max_length=100, title="Env"),
    ] = None
    url: Annotated[Url | None, Field(title="Url")] = None
    headers_secret: Annotated[HeadersSecret | None, Field(title="Headers Secret")] = None
    enabled_tools: Annotated[EnabledTools | None, Field(title="Enabled Tools")] = None
    requires_approval: Annotated[bool | None, Field(title="Requires Approval")] = False
    timeout_s: Annotated[int | None, Field(ge=1, le=600, title="Timeout S")] = 30
    max_retries: Annotated[int | None, Field(ge=0, le=10, title="Max Retries")] = 3
    allowed_groups: Annotated[list[AllowedGroup] | None, Field(max_length=100, title="Allowed Groups")] = None
    approver_group: Annotated[ApproverGroup | None, Field(title="Approver Group")] = None
    side_effects: Annotated[bool | None, Field(title="Side Effects")] = True


class ToolServerView(BaseModel):
    id: Annotated[str, Field(title="Id")]
    name: Annotated[str, Field(title="Name")]
    transport: Annotated[str, Field(title="Transport")]
    command: Annotated[str | None, Field(title="Command")]
    status: Annotated[Literal["ready", "discovering", "failed", "disabled"], Field(title="Status")]
    enabled: Annotated[bool, Field(title="Enabled")]
    error: Annotated[str | None, Field(title="Error")]
    requires_approval: Annotated[bool, Field(title="Requires Approval")]
    timeout_s: Annotated[int, Field(title="Timeout S")]
    max_retries: Annotated[int, Field(title="Max Retries")]
    allowed_groups: Annotated[list[str], Field(title="Allowed Groups")]
    approver_group: Annotated[str | None, Field(title="Approver Group")]
    side_effects: Annotated[bool, Field(title="Side Effects")]
    tools: Annotated[list[DiscoveredToolView], Field(title="Tools")]
    created_by: Annotated[str, Field(title="Created By")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]


class ToolView(BaseModel):
    name: Annotated[str, Field(title="Name")]
    server_id: Annotated[str, Field(title="Server Id")]
    tool: Annotated[str, Field(title="Tool")]
    requires_approval: Annotated[bool, Field(title="Requires Approval")]


class TranscriptMessage(BaseModel):
    id: Annotated[int, Field(title="Id")]
    turn_id: Annotated[str, Field(title="Turn Id")]
    role: Annotated[str, Field(title="Role")]
    content: Annotated[str, Field(title="Content")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]


class TurnError(BaseModel):
    code: Annotated[str, Field(title="Code")]
    message: Annotated[str, Field(title="Message")]


class TurnSummary(BaseModel):
    id: Annotated[str, Field(title="Id")]
    status: Annotated[
        Literal["running", "completed", "awaiting_approval", "failed", "cancelled"],
        Field(title="Status"),
    ]
    error_code: Annotated[str | None, Field(title="Error Code")] = None
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    completed_at: Annotated[AwareDatetime | None, Field(title="Completed At")] = None


class Usage(BaseModel):
    prompt_tokens: Annotated[int | None, Field(title="Prompt Tokens")] = 0
    completion_tokens: Annotated[int | None, Field(title="Completion Tokens")] = 0


class UsageView(BaseModel):
    user_id: Annotated[str, Field(title="User Id")]
    currency: Annotated[str, Field(title="Currency")]
    warning_ratio: Annotated[float, Field(title="Warning Ratio")]
    budget_source: Annotated[str, Field(title="Budget Source")]
    today: PeriodUsage
    this_month: PeriodUsage


class UserUsageRow(BaseModel):
    model: Annotated[str, Field(title="Model")]
    prompt_tokens: Annotated[int, Field(title="Prompt Tokens")]
    completion_tokens: Annotated[int, Field(title="Completion Tokens")]
    total_tokens: Annotated[int, Field(title="Total Tokens")]
    cost: Annotated[float, Field(title="Cost")]
    user_id: Annotated[str, Field(title="User Id")]


class AdminUsageView(BaseModel):
    first_day: Annotated[date, Field(title="First Day")]
    last_day: Annotated[date, Field(title="Last Day")]
    currency: Annotated[str, Field(title="Currency")]
    usage: Annotated[list[UserUsageRow], Field(title="Usage")]
    total_tokens: Annotated[int, Field(title="Total Tokens")]
    total_cost: Annotated[float, Field(title="Total Cost")]


class AgentList(BaseModel):
    agents: Annotated[list[AgentView], Field(title="Agents")]
    default: Annotated[str, Field(title="Default")]


class ApiKeyList(BaseModel):
    api_keys: Annotated[list[ApiKeyView], Field(title="Api Keys")]


class ApprovalOut(BaseModel):
    id: Annotated[str, Field(title="Id")]
    session_id: Annotated[str, Field(title="Session Id")]
    turn_id: Annotated[str, Field(title="Turn Id")]
    requester: Annotated[str, Field(title="Requester")]
    tool: Annotated[str, Field(title="Tool")]
    arguments: Annotated[dict[str, Any], Field(title="Arguments")]
    approver_group: Annotated[str | None, Field(title="Approver Group")]
    status: Annotated[str, Field(title="Status")]
    expires_at: Annotated[str, Field(title="Expires At")]
    context_documents: Annotated[list[ContextDocument], Field(title="Context Documents")]
    reason: Annotated[str | None, Field(title="Reason")]


class ApprovalView(BaseModel):
    id: Annotated[str, Field(title="Id")]
    session_id: Annotated[str, Field(title="Session Id")]
    turn_id: Annotated[str, Field(title="Turn Id")]
    tool: Annotated[str, Field(title="Tool")]
    arguments: Annotated[dict[str, Any] | None, Field(title="Arguments")] = None
    status: Annotated[
        Literal["pending", "approved", "denied", "expired"] | None,
        Field(title="Status"),
    ] = "pending"
    approver_group: Annotated[str | None, Field(title="Approver Group")] = None
    context_documents: Annotated[list[ContextDocument] | None, Field(title="Context Documents")] = None
    reason: Annotated[str | None, Field(title="Reason")] = None


class AssistantMessage(BaseModel):
    role: Annotated[Literal["assistant"], Field(title="Role")] = "assistant"
    content: Annotated[str, Field(title="Content")]
    citations: Annotated[list[Citation] | None, Field(title="Citations")] = None


class AuditEventList(BaseModel):
    events: Annotated[list[AuditEventView], Field(title="Events")]
    """
    Newest first
    """
    next_before_seq: Annotated[int | None, Field(title="Next Before Seq")]
    """
    Pass as before_seq for the next page; null at the end
    """


class ChatMessage(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    role: Annotated[Literal["system", "developer", "user", "assistant", "tool"], Field(title="Role")]
    content: Annotated[str | list[ContentPart] | None, Field(title="Content")] = None


class ChatResponse(BaseModel):
    """
    A finished turn as a client reads it (``POST /chat``, the ``turn.completed`` event).
    """

    session_id: Annotated[str, Field(title="Session Id")]
    turn_id: Annotated[str, Field(title="Turn Id")]
    status: Annotated[
        Literal["completed", "awaiting_approval", "failed", "cancelled"],
        Field(title="Status"),
    ]
    message: AssistantMessage
    tool_calls: Annotated[list[ToolCallRecord] | None, Field(title="Tool Calls")] = None
    approvals: Annotated[list[ApprovalView] | None, Field(title="Approvals")] = None
    usage: Usage | None = None
    model: Annotated[str | None, Field(title="Model")] = None
    error: TurnError | None = None
    notice: Annotated[str | None, Field(title="Notice")] = None
    budget_warning: BudgetWarning | None = None


class CreateApiKeyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    name: Annotated[str, Field(max_length=100, min_length=1, title="Name")]
    scopes: Annotated[
        list[
            Literal[
                "manage_org_kb",
                "manage_dept_kb",
                "manage_tools",
                "upload_docs",
                "query_kb",
                "use_agent",
                "view_audit_logs",
                "manage_budgets",
            ]
        ],
        Field(max_length=8, min_length=1, title="Scopes"),
    ]
    """
    Permissions the key may use
    """
    expires_at: Annotated[AwareDatetime | None, Field(title="Expires At")] = None
    """
    With a time zone; default and maximum: KEEL_API_KEY_MAX_TTL_DAYS ahead
    """


class DocumentList(BaseModel):
    documents: Annotated[list[DocumentView], Field(title="Documents")]


class FailedOperationList(BaseModel):
    failed_operations: Annotated[list[FailedOperationView], Field(title="Failed Operations")]


class KnowledgeBaseList(BaseModel):
    knowledge_bases: Annotated[list[KnowledgeBaseView], Field(title="Knowledge Bases")]


class QueryResponse(BaseModel):
    results: Annotated[list[QueryResult], Field(title="Results")]


class SessionDetail(BaseModel):
    id: Annotated[str, Field(title="Id")]
    title: Annotated[str, Field(title="Title")]
    agent: Annotated[str, Field(title="Agent")]
    agent_version: Annotated[str | None, Field(title="Agent Version")] = None
    turn_count: Annotated[int, Field(title="Turn Count")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    updated_at: Annotated[AwareDatetime, Field(title="Updated At")]
    prompt_tokens: Annotated[int, Field(title="Prompt Tokens")]
    completion_tokens: Annotated[int, Field(title="Completion Tokens")]
    messages: Annotated[list[TranscriptMessage], Field(title="Messages")]
    turns: Annotated[list[TurnSummary] | None, Field(title="Turns")] = None


class SessionList(BaseModel):
    sessions: Annotated[list[SessionSummary], Field(title="Sessions")]
    next_before: Annotated[AwareDatetime | None, Field(title="Next Before")] = None
    """
    Pass as `before` to get the next (older) page; null when there is none.
    """


class ToolList(BaseModel):
    tools: Annotated[list[ToolView], Field(title="Tools")]


class ToolServerList(BaseModel):
    tool_servers: Annotated[list[ToolServerView], Field(title="Tool Servers")]


class ApprovalList(BaseModel):
    approvals: Annotated[list[ApprovalOut], Field(title="Approvals")]


class ChatCompletionRequest(BaseModel):
    """
    OpenAI's body. Keel uses ``model`` (the agent), the last user message (the turn),
    ``stream`` and ``stream_options``; ``user`` is recorded, never trusted for identity.
    Sampling parameters (``temperature``, ``max_tokens``, ...) belong to the agent's
    definition and are accepted and ignored, as unknown fields are.
    """

    model_config = ConfigDict(
        extra="allow",
    )
    model: Annotated[str, Field(max_length=64, min_length=1, title="Model")]
    messages: Annotated[list[ChatMessage], Field(max_length=1000, min_length=1, title="Messages")]
    stream: Annotated[bool | None, Field(title="Stream")] = False
    stream_options: StreamOptions | None = None
    user: Annotated[User | None, Field(title="User")] = None
