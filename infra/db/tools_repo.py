"""The tool allowlist, approvals and the tool invocation log in Postgres."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from core.models.tools import ApprovalView, ContextDocument, ToolSpec

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class ToolServerRecord(BaseModel):
    id: str
    name: str
    transport: str
    command: str | None
    args: list[str]
    env: dict[str, str]
    url: str | None
    headers_secret: str | None
    enabled_tools: list[str] | None
    requires_approval: bool
    timeout_s: int
    max_retries: int
    allowed_groups: list[str]
    approver_group: str | None
    side_effects: bool = True
    #: False: kept (with its discovered tools) but offered to no turn.
    enabled: bool = True
    status: str
    discovered: list[dict[str, Any]]
    error: str | None
    created_by: str
    created_at: datetime

    def offered(self) -> list[dict[str, Any]]:
        """Discovered tools the admin enabled (all of them when ``enabled_tools`` is null)."""
        return [t for t in self.discovered if self.enabled_tools is None or t["name"] in self.enabled_tools]

    def specs(self) -> list[ToolSpec]:
        return [
            ToolSpec(
                name=model_tool_name(self.name, t["name"]),
                server_id=self.id,
                tool=t["name"],
                requires_approval=self.requires_approval,
                timeout_s=self.timeout_s,
                max_retries=self.max_retries,
                allowed_groups=self.allowed_groups,
                approver_group=self.approver_group,
                side_effects=self.side_effects,
            )
            for t in self.offered()
        ]


class ApprovalRecord(BaseModel):
    id: str
    session_id: str
    turn_id: str
    requester: str
    tool: str
    arguments: dict[str, Any]
    approver_group: str | None
    status: str
    decided_by: str | None
    comment: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    context_documents: list[ContextDocument] = []
    reason: str | None = None
    requester_api_key_id: str | None = None


def model_tool_name(server: str, tool: str) -> str:
    """The name the model sees: ``<server>__<tool>``, within OpenAI's 64-char function-name rules."""
    return f"{_NAME_CHARS.sub('_', server)}__{_NAME_CHARS.sub('_', tool)}"[:64]


class ToolsRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------- allowlist
    async def create_server(self, **fields: Any) -> ToolServerRecord:
        fields = {"id": "tool-" + uuid.uuid4().hex[:20], **fields}
        columns = ", ".join(fields)
        placeholders = ", ".join(f"${i}" for i in range(1, len(fields) + 1))
        row = await self._pool.fetchrow(
            f"INSERT INTO tool_servers ({columns}) VALUES ({placeholders}) RETURNING *",  # noqa: S608
            *fields.values(),
        )
        return ToolServerRecord(**dict(row))

    async def server(self, server_id: str) -> ToolServerRecord | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM tool_servers WHERE id = $1 AND deleted_at IS NULL", server_id
        )
        return ToolServerRecord(**dict(row)) if row else None

    async def servers(self) -> list[ToolServerRecord]:
        """Every allowlist entry (enabled or not, whatever its discovery status), by name."""
        rows = await self._pool.fetch("SELECT * FROM tool_servers WHERE deleted_at IS NULL ORDER BY name")
        return [ToolServerRecord(**dict(r)) for r in rows]

    async def ready_servers(self) -> list[ToolServerRecord]:
        """The servers a turn may offer: discovered and enabled (read by every turn)."""
        rows = await self._pool.fetch(
            "SELECT * FROM tool_servers WHERE deleted_at IS NULL AND status = 'ready' AND enabled"
            " ORDER BY name"
        )
        return [ToolServerRecord(**dict(r)) for r in rows]

    async def update_server(self, server_id: str, changes: dict[str, Any]) -> ToolServerRecord | None:
        """Set these columns (names from the caller's own schema, never user text); None when
        there is no such live server."""
        assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
        row = await self._pool.fetchrow(
            f"UPDATE tool_servers SET {assignments} WHERE id = $1 AND deleted_at IS NULL"  # noqa: S608
            " RETURNING *",
            server_id,
            *changes.values(),
        )
        return ToolServerRecord(**dict(row)) if row else None

    async def set_discovered(self, server_id: str, tools: list[dict[str, Any]]) -> None:
        await self._pool.execute(
            "UPDATE tool_servers SET status = 'ready', discovered = $2, error = NULL WHERE id = $1",
            server_id,
            tools,
        )

    async def set_failed(self, server_id: str, error: str) -> None:
        await self._pool.execute(
            "UPDATE tool_servers SET status = 'failed', error = $2 WHERE id = $1", server_id, error
        )

    async def delete_server(self, server_id: str) -> bool:
        status: str = await self._pool.execute(
            "UPDATE tool_servers SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL", server_id
        )
        return status.endswith(" 1")

    async def schemas(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """OpenAI function definitions for these model-facing tool names."""
        wanted = set(names)
        out: list[dict[str, Any]] = []
        for server in await self.ready_servers():
            for tool in server.offered():
                name = model_tool_name(server.name, tool["name"])
                if name in wanted:
                    out.append(
                        {
                            "type": "function",
                            "function": {
                                "name": name,
                                "description": tool.get("description") or "",
                                "parameters": tool.get("input_schema")
                                or {"type": "object", "properties": {}},
                            },
                        }
                    )
        return out

    # -------------------------------------------------------------- approvals
    async def insert_approval(
        self,
        view: ApprovalView,
        *,
        requester: str,
        timeout_s: int,
        requester_api_key_id: str | None = None,
    ) -> None:
        """``view.arguments`` is the redacted view: the full arguments never land here."""
        await self._pool.execute(
            "INSERT INTO tool_approvals (id, session_id, turn_id, requester, tool, arguments, approver_group,"
            " expires_at, context_documents, reason, requester_api_key_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8), $9, $10, $11)"
            " ON CONFLICT (id) DO NOTHING",
            view.id,
            view.session_id,
            view.turn_id,
            requester,
            view.tool,
            view.arguments,
            view.approver_group,
            float(timeout_s),
            [d.model_dump() for d in view.context_documents],
            view.reason,
            requester_api_key_id,
        )

    async def resolve_approval(
        self, approval_id: str, *, status: str, decided_by: str | None, comment: str | None
    ) -> None:
        await self._pool.execute(
            "UPDATE tool_approvals SET status = $2, decided_by = $3, comment = $4, decided_at = now()"
            " WHERE id = $1 AND status = 'pending'",
            approval_id,
            status,
            decided_by,
            comment,
        )

    async def approval(self, approval_id: str) -> ApprovalRecord | None:
        row = await self._pool.fetchrow("SELECT * FROM tool_approvals WHERE id = $1", approval_id)
        return ApprovalRecord(**dict(row)) if row else None

    async def pending_approvals(self, *, user_id: str, groups: Sequence[str]) -> list[ApprovalRecord]:
        """Pending approvals this user may decide (their own, or their approver groups')."""
        rows = await self._pool.fetch(
            "SELECT * FROM tool_approvals WHERE status = 'pending' AND ("
            " (approver_group IS NULL AND requester = $1)"
            " OR (approver_group = ANY($2::text[]) AND requester <> $1))"  # never one's own (duties)
            " ORDER BY created_at",
            user_id,
            list(groups),
        )
        return [ApprovalRecord(**dict(r)) for r in rows]

    # ------------------------------------------------------------ invocations
    async def completed_invocation(self, key: str) -> str | None:
        result: str | None = await self._pool.fetchval(
            "SELECT result FROM tool_invocations WHERE idempotency_key = $1 AND status = 'completed'", key
        )
        return result

    async def record_invocation(
        self,
        *,
        key: str,
        session_id: str,
        turn_id: str,
        user_id: str,
        tool: str,
        arguments: dict[str, Any],
        status: str,
        result: str | None = None,
        latency_ms: int | None = None,
        context_documents: Sequence[ContextDocument] = (),
    ) -> None:
        await self._pool.execute(
            "INSERT INTO tool_invocations (idempotency_key, session_id, turn_id, user_id, tool, arguments,"
            " status, result, latency_ms, completed_at, context_documents)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $7 = 'running' THEN NULL ELSE now() END,"
            " $10)"
            " ON CONFLICT (idempotency_key) DO UPDATE SET status = EXCLUDED.status, result = EXCLUDED.result,"
            " latency_ms = EXCLUDED.latency_ms, completed_at = EXCLUDED.completed_at"
            " WHERE tool_invocations.status <> 'completed'",
            key,
            session_id,
            turn_id,
            user_id,
            tool,
            arguments,
            status,
            result,
            latency_ms,
            [d.model_dump() for d in context_documents],
        )

    # ----------------------------------------------- full (unredacted) arguments
    async def store_arguments(self, ref: str, *, session_id: str, arguments: dict[str, Any]) -> None:
        await self._pool.execute(
            "INSERT INTO tool_call_arguments (ref, session_id, arguments) VALUES ($1, $2, $3)"
            " ON CONFLICT (ref) DO UPDATE SET arguments = EXCLUDED.arguments",
            ref,
            session_id,
            arguments,
        )

    async def arguments(self, ref: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._pool.fetchval(
            "SELECT arguments FROM tool_call_arguments WHERE ref = $1", ref
        )
        return found

    async def forget_arguments(self, ref: str) -> None:
        await self._pool.execute("DELETE FROM tool_call_arguments WHERE ref = $1", ref)

    async def forget_session_arguments(self, session_id: str) -> None:
        await self._pool.execute("DELETE FROM tool_call_arguments WHERE session_id = $1", session_id)
