"""Tools and approvals: the allowlist (OrgAdmin), the tools I may use, and the
approvals I may decide. A decision is the ``decide_approval`` Update of the session's
workflow (api.chat_gateway), answered with the decided approval."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import WorkflowFailureError

from api import chat_gateway
from api.deps import AgentUser, ResourcesDep, ToolAdmin
from api.errors import ApiError
from api.text_guard import RequestModel
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.tools import ApprovalDecision, ContextDocument
from core.names import tool_discovery_workflow_id
from core.policy.egress import EgressRefused
from core.policy.tools import may_approve, separation_of_duties, tools_for
from infra.db.tools_repo import ApprovalRecord, ToolServerRecord
from infra.egress import resolve_and_check
from infra.stdio_commands import resolve_command, stdio_command_allowed
from workflows.tool_discovery import ToolDiscoveryWorkflow

router = APIRouter(prefix="/api/v1", tags=["tools"])

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_TimeoutS = Annotated[int, Field(ge=1, le=600)]
_MaxRetries = Annotated[int, Field(ge=0, le=10)]
_Groups = Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=100)]
_Group = Annotated[str, Field(min_length=1, max_length=256)]


def _omit_default(schema: dict[str, Any]) -> None:
    """A PATCH field's schema: no ``default`` (omitted means unchanged)."""
    schema.pop("default", None)


def _not_null(schema: dict[str, Any]) -> None:
    """A PATCH field that may be omitted but not set to null: its schema is the non-null branch."""
    _omit_default(schema)
    branches = schema.pop("anyOf", [])
    schema.update(next((b for b in branches if b.get("type") != "null"), {}))


class ToolServerRequest(RequestModel):
    name: str = Field(min_length=1, max_length=40, pattern=_NAME.pattern)
    transport: Literal["stdio", "http"] = Field(
        description="`stdio` needs `command`; `http` needs `url` (an allowed host)"
    )
    command: str | None = Field(default=None, max_length=500)
    args: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list, max_length=100)
    env: dict[Annotated[str, Field(min_length=1, max_length=200)], Annotated[str, Field(max_length=8000)]] = (
        Field(default_factory=dict, max_length=100)
    )
    url: str | None = Field(default=None, max_length=2000)
    headers_secret: str | None = Field(default=None, max_length=200)
    enabled_tools: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=500
    )
    requires_approval: bool = False
    timeout_s: _TimeoutS = 30
    max_retries: _MaxRetries = 3
    allowed_groups: _Groups = Field(default_factory=list)
    approver_group: _Group | None = None
    #: False only for read-only tools: they run without approval even after the model read
    #: documents the user does not own.
    side_effects: bool = True


class ToolServerPatch(RequestModel):
    """The fields to change (at least one); omitted fields stay as they are. Only
    ``approver_group`` may be null (no approver group: the requester decides)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # Omitted means unchanged (``changes`` holds only the fields sent); only ``approver_group``
    # may be null.
    requires_approval: bool | None = Field(default=None, json_schema_extra=_not_null)
    approver_group: _Group | None = Field(default=None, json_schema_extra=_omit_default)
    allowed_groups: _Groups | None = Field(default=None, json_schema_extra=_not_null)
    timeout_s: _TimeoutS | None = Field(default=None, json_schema_extra=_not_null)
    max_retries: _MaxRetries | None = Field(default=None, json_schema_extra=_not_null)
    #: False: kept, with its discovered tools, but offered to no turn.
    enabled: bool | None = Field(default=None, json_schema_extra=_not_null)
    side_effects: bool | None = Field(default=None, json_schema_extra=_not_null)

    @model_validator(mode="after")
    def _something_to_change(self) -> ToolServerPatch:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        nulls = sorted(f for f in self.model_fields_set - {"approver_group"} if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} may not be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class DiscoveredToolView(BaseModel):
    name: str
    description: str
    enabled: bool


class ToolServerView(BaseModel):
    id: str
    name: str
    transport: str
    #: The stdio executable as stored (an absolute path: bare names are resolved at registration).
    command: str | None
    #: ``ready``, ``discovering``, ``failed`` (discovery failed; see ``error``) or ``disabled``.
    status: Literal["ready", "discovering", "failed", "disabled"]
    enabled: bool
    error: str | None
    requires_approval: bool
    timeout_s: int
    max_retries: int
    allowed_groups: list[str]
    approver_group: str | None
    side_effects: bool
    tools: list[DiscoveredToolView]
    created_by: str
    created_at: datetime


class ToolServerList(BaseModel):
    tool_servers: list[ToolServerView]


class ToolView(BaseModel):
    name: str
    server_id: str
    tool: str
    requires_approval: bool


class ToolList(BaseModel):
    tools: list[ToolView]


class ApprovalOut(BaseModel):
    id: str
    session_id: str
    turn_id: str
    requester: str
    tool: str
    arguments: dict[str, Any]
    approver_group: str | None
    status: str
    expires_at: str
    #: Documents the user does not own that were in the model's context ("proposed after reading").
    context_documents: list[ContextDocument]
    #: Why a human must decide when the tool itself does not require it.
    reason: str | None


class ApprovalList(BaseModel):
    approvals: list[ApprovalOut]


class DecisionRequest(RequestModel):
    decision: Literal["approve", "deny"]
    comment: str | None = Field(default=None, max_length=2000)


def _server_view(record: ToolServerRecord) -> ToolServerView:
    enabled = {t["name"] for t in record.offered()}
    return ToolServerView(
        **record.model_dump(include=set(ToolServerView.model_fields) - {"tools", "status"}),
        status=record.status if record.enabled else "disabled",
        tools=[
            DiscoveredToolView(
                name=t["name"], description=t.get("description") or "", enabled=t["name"] in enabled
            )
            for t in record.discovered
        ],
    )


def _approval_view(record: ApprovalRecord) -> ApprovalOut:
    return ApprovalOut(
        **record.model_dump(include=set(ApprovalOut.model_fields) - {"expires_at"}),
        expires_at=record.expires_at.isoformat(),
    )


async def _validate_server(
    body: ToolServerRequest, allowed_hosts: list[str], allowed_commands: list[str] | None
) -> ToolServerRequest:
    """The entry as it will be stored (a stdio command resolved to its absolute path), or an error."""
    if body.transport == "stdio":
        if not body.command:
            raise ApiError(ErrorCode.INVALID_REQUEST, "a stdio tool server needs a command")
        if not stdio_command_allowed(body.command, allowed_commands):
            raise ApiError(
                ErrorCode.STDIO_COMMAND_NOT_ALLOWED,
                f"the stdio command {body.command!r} is not in KEEL_MCP_STDIO_ALLOWED_COMMANDS",
            )
        resolved = resolve_command(body.command)
        if resolved is None:
            raise ApiError(
                ErrorCode.COMMAND_NOT_FOUND,
                f"the stdio command {body.command!r} is not an executable on PATH or in Keel's environment",
            )
        return body.model_copy(update={"command": resolved})
    if body.transport == "http":
        if not body.url:
            raise ApiError(ErrorCode.INVALID_REQUEST, "an http tool server needs a url")
        try:
            await resolve_and_check(body.url, allowed_hosts=allowed_hosts)
        except EgressRefused as exc:
            raise ApiError(ErrorCode.POLICY_DENIED, f"refused tool url: {exc}") from exc
        except (OSError, ValueError) as exc:  # no such host, or a URL the resolver cannot take
            raise ApiError(
                ErrorCode.INVALID_REQUEST, "the tool url's host could not be resolved to an address"
            ) from exc
    return body


@router.post("/admin/tools", operation_id="add_tool_server", status_code=201, response_model=ToolServerView)
async def add_tool_server(
    body: ToolServerRequest, principal: ToolAdmin, resources: ResourcesDep
) -> ToolServerView:
    """Allowlist an MCP server; Keel discovers its tools (in a workflow) before answering."""
    body = await _validate_server(
        body, resources.settings.tool_allowed_hosts, resources.settings.mcp_stdio_allowed_commands
    )
    repo = resources.tools_repo
    try:
        record = await repo.create_server(**body.model_dump(), created_by=principal.user_id)
    except Exception as exc:  # unique name among live servers
        if "tool_servers_name" in str(exc):
            raise ApiError(ErrorCode.INVALID_REQUEST, f"a tool server named '{body.name}' exists") from exc
        raise
    try:
        await resources.temporal.execute_workflow(
            ToolDiscoveryWorkflow.run,
            record.id,
            id=tool_discovery_workflow_id(record.id),
            task_queue=resources.settings.tools_task_queue,
        )
    except WorkflowFailureError as exc:
        await repo.delete_server(record.id)
        cause = getattr(exc.cause, "cause", None)
        detail = getattr(cause, "message", None) or "the tool server could not be reached"
        raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, detail, status=502) from exc
    discovered = await repo.server(record.id)
    assert discovered is not None
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.ADMIN_TOOL_ADDED,
            user_id=principal.user_id,
            resource_type="tool_server",
            resource_id=record.id,
            details={
                "name": body.name,
                "transport": body.transport,
                "requires_approval": body.requires_approval,
                "side_effects": body.side_effects,
                "allowed_groups": body.allowed_groups,
                "tools": [t["name"] for t in discovered.offered()],
            },
        )
    )
    return _server_view(discovered)


@router.get("/admin/tools", operation_id="list_tool_servers", response_model=ToolServerList)
async def list_tool_servers(principal: ToolAdmin, resources: ResourcesDep) -> ToolServerList:
    """Every allowlist entry, enabled or not, with its discovered tools, by name."""
    return ToolServerList(tool_servers=[_server_view(r) for r in await resources.tools_repo.servers()])


@router.patch("/admin/tools/{server_id}", operation_id="update_tool_server", response_model=ToolServerView)
async def update_tool_server(
    server_id: str, body: ToolServerPatch, principal: ToolAdmin, resources: ResourcesDep
) -> ToolServerView:
    """Change an entry's approval rule, groups, limits or switch it off; every session's
    next turn follows (turns read the allowlist when they start)."""
    repo = resources.tools_repo
    before = await repo.server(server_id)
    changes = body.changes()
    updated = await repo.update_server(server_id, changes) if before is not None else None
    if before is None or updated is None:
        raise ApiError(ErrorCode.NOT_FOUND, "tool server not found")
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.ADMIN_TOOL_UPDATED,
            user_id=principal.user_id,
            resource_type="tool_server",
            resource_id=server_id,
            details={
                "name": updated.name,
                "changes": {
                    field: {"from": getattr(before, field), "to": value} for field, value in changes.items()
                },
            },
        )
    )
    return _server_view(updated)


@router.delete("/admin/tools/{server_id}", operation_id="remove_tool_server", status_code=204)
async def remove_tool_server(server_id: str, principal: ToolAdmin, resources: ResourcesDep) -> Response:
    if not await resources.tools_repo.delete_server(server_id):
        raise ApiError(ErrorCode.NOT_FOUND, "tool server not found")
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.ADMIN_TOOL_REMOVED,
            user_id=principal.user_id,
            resource_type="tool_server",
            resource_id=server_id,
        )
    )
    return Response(status_code=204)


@router.get("/tools", operation_id="list_tools", response_model=ToolList)
async def list_tools(principal: AgentUser, resources: ResourcesDep) -> ToolList:
    """The tools my agent may use."""
    specs = [s for server in await resources.tools_repo.ready_servers() for s in server.specs()]
    return ToolList(
        tools=[
            ToolView(name=s.name, server_id=s.server_id, tool=s.tool, requires_approval=s.requires_approval)
            for s in tools_for(principal, specs)
        ]
    )


@router.get("/approvals", operation_id="list_approvals", response_model=ApprovalList)
async def list_approvals(principal: AgentUser, resources: ResourcesDep) -> ApprovalList:
    """Pending approvals I may decide."""
    records = await resources.tools_repo.pending_approvals(user_id=principal.user_id, groups=principal.groups)
    return ApprovalList(approvals=[_approval_view(r) for r in records])


@router.post("/approvals/{approval_id}", operation_id="decide_approval", response_model=ApprovalOut)
async def decide_approval(
    approval_id: str, body: DecisionRequest, principal: AgentUser, resources: ResourcesDep
) -> ApprovalOut:
    """Approve or deny a tool call; answers the approval as decided (``approved``/``denied``).
    A decided (or expired) approval answers 409 ``stale_request``."""
    record = await resources.tools_repo.approval(approval_id)
    if record is None or not may_approve(
        principal, requester=record.requester, approver_group=record.approver_group
    ):
        raise ApiError(ErrorCode.NOT_FOUND, "approval not found")
    refusal = separation_of_duties(
        principal,
        requester=record.requester,
        approver_group=record.approver_group,
        requester_api_key_id=record.requester_api_key_id,
    )
    if refusal is not None:
        raise ApiError(ErrorCode.SEPARATION_OF_DUTIES, refusal)
    if record.status != "pending":
        raise ApiError(ErrorCode.STALE_REQUEST, f"this approval is already {record.status}")
    decided = await chat_gateway.decide_approval(
        resources.temporal,
        session_id=record.session_id,
        decision=ApprovalDecision(
            approval_id=approval_id,
            approved=body.decision == "approve",
            decided_by=principal.user_id,
            decided_by_name=principal.display_name or principal.email,
            comment=body.comment,
        ),
    )
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.TOOL_APPROVAL_DECIDED,
            user_id=principal.user_id,
            session_id=record.session_id,
            resource_type="tool_approval",
            resource_id=approval_id,
            details={"decision": body.decision, "tool": record.tool, "requester": record.requester},
        )
    )
    return _approval_view(record).model_copy(update={"status": decided.status})
