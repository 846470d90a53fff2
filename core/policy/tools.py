"""Tool policy: may this user's agent call this tool, and does it need a human?

Pure and deterministic, evaluated inside the chat workflow for every tool call
the model makes. Text the model read (documents, tool results) can make it ask
for anything; it cannot change this answer. What it *can* change is who must
look first: a tool with side effects proposed while the model's context held
retrieved text the user does not own (a document shared with them, an org
document) waits for a human approval that names those documents.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.models.chat import Citation
from core.models.principal import Principal, user_principal
from core.models.tools import ContextDocument, ToolCallRequest, ToolDecision, ToolSpec


def tools_for(principal: Principal, allowlist: Sequence[ToolSpec]) -> list[ToolSpec]:
    """The allowlisted tools this principal may use (empty ``allowed_groups`` means everyone)."""
    groups = set(principal.groups)
    return [t for t in allowlist if not t.allowed_groups or groups & set(t.allowed_groups)]


def untrusted_documents(citations: Sequence[Citation], *, user_id: str) -> list[ContextDocument]:
    """The retrieved documents of a turn that are not ``user:<user_id>``'s own (unknown owner
    counts as not theirs), once each, in retrieval order."""
    own = user_principal(user_id)
    found: dict[str, ContextDocument] = {}
    for c in citations:
        if c.owner_id != own and c.document_id not in found:
            found[c.document_id] = ContextDocument(
                document_id=c.document_id, title=c.title, owner_id=c.owner_id
            )
    return list(found.values())


def proposed_after_reading(documents: Sequence[ContextDocument]) -> str:
    """The human-readable reason an approval shows: which documents, whose."""
    shown = ", ".join(f"'{d.title}' ({d.owner_id or 'unknown owner'})" for d in documents)
    return f"proposed after reading: {shown}"


def decide(
    call: ToolCallRequest,
    *,
    offered: Sequence[ToolSpec],
    principal: Principal,
    untrusted_context: Sequence[ContextDocument] = (),
) -> ToolDecision:
    spec = next((t for t in offered if t.name == call.name), None)
    if spec is None:
        return ToolDecision(allowed=False, reason=f"'{call.name}' is not an approved tool for this agent")
    if spec.allowed_groups and not set(principal.groups) & set(spec.allowed_groups):
        return ToolDecision(allowed=False, reason=f"you are not in a group allowed to use '{call.name}'")
    if spec.requires_approval:
        return ToolDecision(allowed=True, needs_approval=True)
    if spec.side_effects and untrusted_context:
        return ToolDecision(
            allowed=True, needs_approval=True, reason=proposed_after_reading(untrusted_context)
        )
    return ToolDecision(allowed=True)


def may_approve(principal: Principal, *, requester: str, approver_group: str | None) -> bool:
    """Who may see and decide an approval: the requester when the tool names no approver
    group, else the group's members (see :func:`separation_of_duties` for who of them may not)."""
    if approver_group is None:
        return principal.user_id == requester
    return approver_group in principal.groups


def separation_of_duties(
    principal: Principal,
    *,
    requester: str,
    approver_group: str | None,
    requester_api_key_id: str | None,
) -> str | None:
    """Why this (otherwise authorised) approver may not decide, or None.

    With an approver group the requester never approves their own call, group member or
    not; and an API key never approves a call that was made with it."""
    if approver_group is not None and principal.user_id == requester:
        return "you asked for this tool call; another member of the approver group must decide"
    if principal.api_key_id is not None and principal.api_key_id == requester_api_key_id:
        return "an API key may not approve a tool call made with it; a person must decide"
    return None
