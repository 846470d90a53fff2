"""Tool activities: the allowlist for a turn, MCP tool calls, approvals, discovery.

Every tool call carries an idempotency key (workflow id + turn + tool call id):
it is passed to the MCP server in the request metadata and recorded here, so a
retry after a crash returns the result Keel already saw complete instead of
running the side effect again. Every invocation, refusal, approval request and
decision is written to Postgres (``tool_invocations``, ``tool_approvals``) and
to the JSON log, with arguments redacted by ``KEEL_TOOL_REDACT_PATTERN``; each
call that reached its tool is also a ``tool.invoked`` audit event (deduplicated
on session, turn and call id, so a retried activity records it once).
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent, Outcome
from core.models.principal import Principal
from core.models.tools import (
    CallToolInput,
    CallToolResult,
    LoadToolsInput,
    LoadToolsResult,
    RecordApprovalInput,
    RefusalInput,
    ResolveApprovalInput,
)
from core.policy.egress import EgressRefused
from core.policy.redaction import redact
from core.policy.tools import tools_for
from infra.agents import AgentRegistry
from infra.audit.log import AuditLog
from infra.call_spans import tool_call
from infra.circuit import CircuitOpen, Circuits
from infra.db.tools_repo import ToolServerRecord, ToolsRepository
from infra.mcp_client import (
    McpToolClient,
    StdioCommandRefused,
    ToolServerConfig,
    ToolTimeout,
    ToolUnavailable,
)
from infra.turn_events import TurnEventStream

from .errors import circuit_open

__all__ = ["ToolActivities", "redact", "server_config"]

log = structlog.get_logger(__name__)

#: Longest tool result kept in history and shown to the model.
RESULT_CHARS = 8000


def server_config(record: ToolServerRecord, *, headers: dict[str, str]) -> ToolServerConfig:
    return ToolServerConfig(
        id=record.id,
        transport="http" if record.transport == "http" else "stdio",
        command=record.command,
        args=record.args,
        env=record.env,
        url=record.url,
        headers=headers,
    )


class ToolActivities:
    def __init__(
        self,
        *,
        repo: ToolsRepository,
        mcp: McpToolClient,
        events: TurnEventStream,
        redact_pattern: str,
        secrets: dict[str, dict[str, str]],
        agents: AgentRegistry,
        audit: AuditLog,
        circuits: Circuits | None = None,
    ) -> None:
        self._repo = repo
        self._audit = audit
        self._circuits = circuits or Circuits(redis=None, configs={})
        self._mcp = mcp
        self._events = events
        self._redact = re.compile(redact_pattern, re.IGNORECASE)
        self._secrets = secrets  # headers_secret name → headers (from the worker's environment)
        self._agents = agents

    @activity.defn
    async def load_tools(self, inp: LoadToolsInput) -> LoadToolsResult:
        specs = [s for server in await self._repo.ready_servers() for s in server.specs()]
        return LoadToolsResult(
            tools=tools_for(Principal(user_id=inp.user_id, groups=tuple(inp.groups)), specs)
        )

    @activity.defn
    async def call_tool(self, inp: CallToolInput) -> CallToolResult:
        key = inp.idempotency_key
        done = await self._repo.completed_invocation(key)
        if done is not None:
            log.info("tool.replayed", tool=inp.call.name, idempotency_key=key)
            # Recorded before unless the last attempt died in between (then recorded now, once).
            await self._audit_invocation(inp, redact(inp.call.arguments, self._redact), "success")
            return CallToolResult(ok=True, content=done)
        record = await self._repo.server(inp.spec.server_id)
        if record is None or not record.enabled:
            raise ApplicationError(
                f"the tool '{inp.call.name}' was removed or disabled",
                type=ErrorCode.POLICY_DENIED,
                non_retryable=True,
            )
        arguments = await self._full_arguments(inp)
        audit_args = redact(inp.call.arguments, self._redact)
        common: dict[str, Any] = {
            "key": key,
            "session_id": inp.session_id,
            "turn_id": inp.turn_id,
            "user_id": inp.user_id,
            "tool": inp.call.name,
            "arguments": audit_args,
            "context_documents": inp.context_documents,
        }
        circuit = self._circuits.get("mcp", record.id)
        try:
            ticket = await circuit.admit()
        except CircuitOpen as exc:  # the server is not called; the model is told why
            log.warning(
                "tool.circuit_open", tool=inp.call.name, server_id=record.id, retry_after_s=exc.retry_after_s
            )
            raise circuit_open(exc, f"the tool server of '{inp.call.name}'", wait=False) from exc
        await self._repo.record_invocation(status="running", **common)
        started = time.monotonic()
        ids = {"user_id": inp.user_id, "session_id": inp.session_id, "turn_id": inp.turn_id}
        try:
            with tool_call(
                server_id=record.id,
                server_name=record.name,
                tool=inp.spec.tool,
                called_as=inp.call.name,
                call_id=inp.call.call_id,
                arguments=audit_args,
                **ids,
            ) as observed:
                outcome = await self._mcp.call_tool(
                    server_config(record, headers=self._secrets.get(record.headers_secret or "", {})),
                    inp.spec.tool,
                    arguments,
                    idempotency_key=key,
                    timeout_s=inp.spec.timeout_s,
                )
                observed.result(ok=outcome.ok, content=outcome.content)
        except StdioCommandRefused as exc:
            await ticket.success()  # Keel refused it: says nothing of the server's health
            await self._repo.record_invocation(status="refused", result=str(exc)[:500], **common)
            await self._audit_invocation(inp, audit_args, "denied", reason=str(exc)[:500])
            raise ApplicationError(
                str(exc), type=ErrorCode.STDIO_COMMAND_NOT_ALLOWED, non_retryable=True
            ) from exc
        except EgressRefused as exc:
            await ticket.success()
            await self._repo.record_invocation(
                status="refused", result=f"egress refused: {exc}"[:500], **common
            )
            await self._audit_invocation(inp, audit_args, "denied", reason=f"egress refused: {exc}"[:500])
            raise ApplicationError(
                f"the tool's address is not allowed: {exc}", type=ErrorCode.POLICY_DENIED, non_retryable=True
            ) from exc
        except (ToolTimeout, ToolUnavailable) as exc:
            opened = await ticket.failure()
            latency = int((time.monotonic() - started) * 1000)
            await self._repo.record_invocation(
                status="failed", result=str(exc)[:500], latency_ms=latency, **common
            )
            log.warning("tool.failed", tool=inp.call.name, error=str(exc)[:200], latency_ms=latency)
            await self._audit_invocation(
                inp, audit_args, "failure", error=str(exc)[:200], attempt=activity.info().attempt
            )
            if opened is not None:
                raise circuit_open(opened, f"the tool server of '{inp.call.name}'", wait=False) from exc
            raise ApplicationError(
                f"the tool '{inp.call.name}' is unavailable", type=ErrorCode.UPSTREAM_UNAVAILABLE
            ) from exc
        await ticket.success()  # a tool's own error result is a healthy server's answer
        latency = int((time.monotonic() - started) * 1000)
        content = outcome.content[:RESULT_CHARS]
        status = "completed" if outcome.ok else "failed"
        await self._repo.record_invocation(status=status, result=content, latency_ms=latency, **common)
        log.info("tool.invoked", tool=inp.call.name, status=status, latency_ms=latency, arguments=audit_args)
        await self._audit_invocation(
            inp, audit_args, "success" if outcome.ok else "failure", latency_ms=latency
        )
        if outcome.ok and inp.call.arguments_ref:
            await self._repo.forget_arguments(inp.call.arguments_ref)  # the result is recorded now
        return CallToolResult(ok=outcome.ok, content=content)

    async def _full_arguments(self, inp: CallToolInput) -> dict[str, Any]:
        """The arguments the tool gets: the redacted view unless secrets were masked, then the
        full ones from Postgres (the one place they are read; never in workflow history)."""
        ref = inp.call.arguments_ref
        if ref is None:
            return inp.call.arguments
        found = await self._repo.arguments(ref)
        if found is None:
            raise ApplicationError(
                "the arguments of this tool call are gone", type=ErrorCode.POLICY_DENIED, non_retryable=True
            )
        return found

    async def _audit_invocation(
        self,
        inp: CallToolInput | RefusalInput,
        arguments: dict[str, Any],
        outcome: Outcome,
        *,
        attempt: int | None = None,
        **details: Any,
    ) -> None:
        """``tool.invoked`` once per call (once per failed attempt: each reached the tool);
        ``denied`` when Keel's policy refused the call."""
        dedupe = f"tool.invoked:{inp.session_id}:{inp.turn_id}:{inp.call.call_id}"
        await self._audit.record(
            AuditEntry(
                event=AuditEvent.TOOL_INVOKED,
                user_id=inp.user_id,
                session_id=inp.session_id,
                outcome=outcome,
                resource_type="tool",
                resource_id=inp.call.name,
                details={
                    "turn_id": inp.turn_id,
                    "call_id": inp.call.call_id,
                    "arguments": arguments,
                    # Documents the user does not own that were in the model's context.
                    "context_documents": [
                        d.model_dump()
                        for d in (inp.context_documents if isinstance(inp, CallToolInput) else [])
                    ],
                    **details,
                },
                dedupe_key=dedupe if attempt is None else f"{dedupe}:attempt-{attempt}",
            )
        )

    @activity.defn
    async def record_refusal(self, inp: RefusalInput) -> None:
        await self._repo.record_invocation(
            key=inp.idempotency_key,
            session_id=inp.session_id,
            turn_id=inp.turn_id,
            user_id=inp.user_id,
            tool=inp.call.name,
            arguments=redact(inp.call.arguments, self._redact),
            status="refused",
            result=inp.reason,
        )
        if inp.call.arguments_ref:  # the call will not run: its secrets are not kept
            await self._repo.forget_arguments(inp.call.arguments_ref)
        log.warning("tool.refused", tool=inp.call.name, reason=inp.reason, user_id=inp.user_id)
        await self._audit_invocation(
            inp, redact(inp.call.arguments, self._redact), "denied", reason=inp.reason[:500]
        )

    @activity.defn
    async def record_approval(self, inp: RecordApprovalInput) -> None:
        view = inp.approval
        await self._repo.insert_approval(
            view,
            requester=inp.requester,
            timeout_s=inp.timeout_s,
            requester_api_key_id=inp.requester_api_key_id,
        )
        await self._events.publish(view.turn_id, "approval.required", view.model_dump(mode="json"))
        log.info("tool.approval_requested", approval_id=view.id, tool=view.tool, requester=inp.requester)

    @activity.defn
    async def resolve_approval(self, inp: ResolveApprovalInput) -> None:
        await self._repo.resolve_approval(
            inp.approval_id, status=inp.status, decided_by=inp.decided_by, comment=inp.comment
        )
        if inp.arguments_ref:  # the call will not run: its secrets are not kept
            await self._repo.forget_arguments(inp.arguments_ref)
        record = await self._repo.approval(inp.approval_id)
        if record is not None:  # channels showing the request rewrite it (docs/api.md, Events)
            await self._events.publish(
                record.turn_id,
                "approval.decided",
                {
                    "turn_id": record.turn_id,
                    "id": record.id,
                    "tool": record.tool,
                    "arguments": record.arguments,
                    "status": inp.status,
                    "decided_by": inp.decided_by,
                    "decided_by_name": inp.decided_by_name,
                },
            )
        log.info("tool.approval_decided", approval_id=inp.approval_id, status=inp.status, by=inp.decided_by)

    @activity.defn
    async def discover_tools(self, server_id: str) -> list[str]:
        """Connect to a newly registered server and store its tool list."""
        record = await self._repo.server(server_id)
        if record is None:
            raise ApplicationError("tool server not found", type=ErrorCode.NOT_FOUND, non_retryable=True)
        try:
            tools = await self._mcp.list_tools(
                server_config(record, headers=self._secrets.get(record.headers_secret or "", {})),
                refresh=True,
            )
        except StdioCommandRefused as exc:
            await self._repo.set_failed(server_id, str(exc)[:500])
            raise ApplicationError(
                str(exc)[:500], type=ErrorCode.STDIO_COMMAND_NOT_ALLOWED, non_retryable=True
            ) from exc
        except (ToolTimeout, ToolUnavailable, EgressRefused) as exc:
            await self._repo.set_failed(server_id, str(exc)[:500])
            raise ApplicationError(
                f"could not reach the tool server: {exc}"[:500],
                type=ErrorCode.UPSTREAM_UNAVAILABLE,
                non_retryable=True,
            ) from exc
        await self._repo.set_discovered(server_id, [t.model_dump() for t in tools])
        return [t.name for t in tools]
