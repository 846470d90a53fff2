"""Tools and approvals: the allowlist (OrgAdmin), the tools I may use, and the
approvals I may decide. A decision is the ``decide_approval`` Update of the session's
workflow (api.chat_gateway), answered with the decided approval."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
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
from infra.mcp_client import stdio_command_allowed
from workflows.tool_discovery import ToolDiscoveryWorkflow

router = APIRouter(prefix="/api/v1", tags=["tools"])

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


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
    timeout_s: int = Field(default=30, ge=1, le=600)
    max_retries: int = Field(default=3, ge=0, le=10)
    allowed_groups: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=100
    )
    approver_group: str | None = Field(default=None, min_length=1, max_length=256)
    #: False only for read-only tools: they run without approval even after the model read
    #: documents the user does not own.
    side_effects: bool = True


class DiscoveredToolView(BaseModel):
    name: str
    description: str
    enabled: bool


class ToolServerView(BaseModel):
    id: str
    name: str
    transport: str
    status: str
    requires_approval: bool
    timeout_s: int
    max_retries: int
    allowed_groups: list[str]
    approver_group: str | None
    side_effects: bool
    tools: list[DiscoveredToolView]


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
        **record.model_dump(include=set(ToolServerView.model_fields) - {"tools"}),
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
) -> None:
    if body.transport == "stdio" and not body.command:
        raise ApiError(ErrorCode.INVALID_REQUEST, "a stdio tool server needs a command")
    if (
        body.transport == "stdio"
        and body.command
        and not stdio_command_allowed(body.command, allowed_commands)
    ):
        raise ApiError(
            ErrorCode.STDIO_COMMAND_NOT_ALLOWED,
            f"the stdio command {body.command!r} is not in KEEL_MCP_STDIO_ALLOWED_COMMANDS",
        )
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


@router.post("/admin/tools", operation_id="add_tool_server", status_code=201, response_model=ToolServerView)
async def add_tool_server(
    body: ToolServerRequest, principal: ToolAdmin, resources: ResourcesDep
) -> ToolServerView:
    """Allowlist an MCP server; Keel discovers its tools (in a workflow) before answering."""
    await _validate_server(
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
            task_queue=resources.settings.chat_task_queue,
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
