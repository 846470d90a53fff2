"""Tool policy: may this user's agent call this tool, and does it need a human?

Pure and deterministic, evaluated inside the chat workflow for every tool call
the model makes. Text the model read (documents, tool results) can make it ask
for anything; it cannot change this answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.models.principal import Principal
from core.models.tools import ToolCallRequest, ToolDecision, ToolSpec


def tools_for(principal: Principal, allowlist: Sequence[ToolSpec]) -> list[ToolSpec]:
    """The allowlisted tools this principal may use (empty ``allowed_groups`` means everyone)."""
    groups = set(principal.groups)
    return [t for t in allowlist if not t.allowed_groups or groups & set(t.allowed_groups)]


def decide(call: ToolCallRequest, *, offered: Sequence[ToolSpec], principal: Principal) -> ToolDecision:
    spec = next((t for t in offered if t.name == call.name), None)
    if spec is None:
        return ToolDecision(allowed=False, reason=f"'{call.name}' is not an approved tool for this agent")
    if spec.allowed_groups and not set(principal.groups) & set(spec.allowed_groups):
        return ToolDecision(allowed=False, reason=f"you are not in a group allowed to use '{call.name}'")
    return ToolDecision(allowed=True, needs_approval=spec.requires_approval)


def may_approve(principal: Principal, *, requester: str, approver_group: str | None) -> bool:
    """The requester approves their own calls unless the tool names an approver group."""
    if approver_group is None:
        return principal.user_id == requester
    return approver_group in principal.groups
