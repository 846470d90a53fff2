"""Every operation of docs/openapi.json as a :class:`Call` (shared by both clients).

Names follow the spec's operation ids; request field names are the spec's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from keel_sdk import _models as m
from keel_sdk._base import Call, model, no_content, segment

KB = "/api/v1/knowledge-bases"


def _body(**fields: Any) -> dict[str, Any]:
    """The fields that were given (None means: not sent, the server's default applies)."""
    return {k: v for k, v in fields.items() if v is not None}


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


# ------------------------------------------------------------------ auth
def create_dev_token(user_id: str, claims: Mapping[str, Any]) -> Call[m.TokenResponse]:
    body = {"user_id": user_id, **claims}
    return Call("POST", "/api/v1/auth/dev-token", model(m.TokenResponse), json=body, idempotent=True)


def get_me() -> Call[m.MeResponse]:
    return Call("GET", "/api/v1/auth/me", model(m.MeResponse))


# ------------------------------------------------------------------ chat and sessions
def chat_body(message: str, session_id: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    return _body(message=message, session_id=session_id, **extra)


def chat(message: str, session_id: str | None, extra: Mapping[str, Any]) -> Call[m.ChatResponse]:
    return Call("POST", "/api/v1/chat", model(m.ChatResponse), json=chat_body(message, session_id, extra))


def list_sessions(limit: int | None, before: datetime | str | None) -> Call[m.SessionList]:
    params = {"limit": limit, "before": _iso(before)}
    return Call("GET", "/api/v1/sessions", model(m.SessionList), params=params)


def get_session(session_id: str) -> Call[m.SessionDetail]:
    return Call("GET", f"/api/v1/sessions/{segment(session_id)}", model(m.SessionDetail))


def rename_session(session_id: str, title: str) -> Call[m.SessionSummary]:
    path = f"/api/v1/sessions/{segment(session_id)}"
    return Call("PATCH", path, model(m.SessionSummary), json={"title": title})


def delete_session(session_id: str) -> Call[None]:
    return Call("DELETE", f"/api/v1/sessions/{segment(session_id)}", no_content)


def turn_path(session_id: str, turn_id: str) -> str:
    return f"/api/v1/sessions/{segment(session_id)}/turns/{segment(turn_id)}"


def cancel_turn(session_id: str, turn_id: str) -> Call[m.CancelAccepted]:
    return Call("POST", f"{turn_path(session_id, turn_id)}/cancel", model(m.CancelAccepted), idempotent=True)


# ------------------------------------------------------------------ knowledge
def list_knowledge_bases() -> Call[m.KnowledgeBaseList]:
    return Call("GET", KB, model(m.KnowledgeBaseList))


def upload_document(kb_id: str, files: Any) -> Call[m.DocumentAccepted]:
    return Call("POST", f"{KB}/{segment(kb_id)}/documents", model(m.DocumentAccepted), files=files)


def start_ingestion(kb_id: str, files: Any) -> Call[m.BatchAccepted]:
    return Call("POST", f"{KB}/{segment(kb_id)}/ingestions", model(m.BatchAccepted), files=files)


def get_ingestion(batch_id: str) -> Call[m.BatchStatus]:
    return Call("GET", f"/api/v1/ingestions/{segment(batch_id)}", model(m.BatchStatus))


def query_knowledge_base(kb_id: str, query: str, top_k: int | None) -> Call[m.QueryResponse]:
    path = f"{KB}/{segment(kb_id)}/query"
    return Call("POST", path, model(m.QueryResponse), json=_body(query=query, top_k=top_k), idempotent=True)


def list_documents(kb_id: str) -> Call[m.DocumentList]:
    return Call("GET", f"{KB}/{segment(kb_id)}/documents", model(m.DocumentList))


def _doc(kb_id: str, doc_id: str) -> str:
    return f"{KB}/{segment(kb_id)}/documents/{segment(doc_id)}"


def get_document(kb_id: str, doc_id: str) -> Call[m.DocumentView]:
    return Call("GET", _doc(kb_id, doc_id), model(m.DocumentView))


def delete_document(kb_id: str, doc_id: str) -> Call[None]:
    return Call("DELETE", _doc(kb_id, doc_id), no_content)


def share_document(
    kb_id: str, doc_id: str, user_ids: Sequence[str], group_ids: Sequence[str], *, share: bool
) -> Call[m.ShareResponse]:
    body = {"user_ids": list(user_ids), "group_ids": list(group_ids)}
    method = "POST" if share else "DELETE"
    return Call(method, f"{_doc(kb_id, doc_id)}/shares", model(m.ShareResponse), json=body, idempotent=True)


# ------------------------------------------------------------------ tools, agents, approvals
def list_tools() -> Call[m.ToolList]:
    return Call("GET", "/api/v1/tools", model(m.ToolList))


def list_agents() -> Call[m.AgentList]:
    return Call("GET", "/api/v1/agents", model(m.AgentList))


def list_approvals() -> Call[m.ApprovalList]:
    return Call("GET", "/api/v1/approvals", model(m.ApprovalList))


def decide_approval(approval_id: str, decision: str, comment: str | None) -> Call[m.ApprovalOut]:
    body = _body(decision=decision, comment=comment)
    return Call("POST", f"/api/v1/approvals/{segment(approval_id)}", model(m.ApprovalOut), json=body)


# ------------------------------------------------------------------ API keys, usage
def create_api_key(
    name: str, scopes: Sequence[str], expires_at: datetime | str | None
) -> Call[m.ApiKeyCreated]:
    body = _body(name=name, scopes=list(scopes), expires_at=_iso(expires_at))
    return Call("POST", "/api/v1/api-keys", model(m.ApiKeyCreated), json=body)


def list_api_keys() -> Call[m.ApiKeyList]:
    return Call("GET", "/api/v1/api-keys", model(m.ApiKeyList))


def rotate_api_key(key_id: str) -> Call[m.ApiKeyCreated]:
    return Call("POST", f"/api/v1/api-keys/{segment(key_id)}/rotate", model(m.ApiKeyCreated))


def revoke_api_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/api/v1/api-keys/{segment(key_id)}", no_content)


def get_my_usage() -> Call[m.UsageView]:
    return Call("GET", "/api/v1/usage", model(m.UsageView))


# ------------------------------------------------------------------ admin
def list_tool_servers() -> Call[m.ToolServerList]:
    return Call("GET", "/api/v1/admin/tools", model(m.ToolServerList))


def add_tool_server(fields: Mapping[str, Any]) -> Call[m.ToolServerView]:
    return Call("POST", "/api/v1/admin/tools", model(m.ToolServerView), json=dict(fields))


def update_tool_server(server_id: str, fields: Mapping[str, Any]) -> Call[m.ToolServerView]:
    path = f"/api/v1/admin/tools/{segment(server_id)}"
    return Call("PATCH", path, model(m.ToolServerView), json=dict(fields))


def remove_tool_server(server_id: str) -> Call[None]:
    return Call("DELETE", f"/api/v1/admin/tools/{segment(server_id)}", no_content)


def create_org_knowledge_base(name: str, description: str | None) -> Call[m.KnowledgeBaseView]:
    body = _body(name=name, description=description)
    return Call("POST", "/api/v1/admin/knowledge-bases", model(m.KnowledgeBaseView), json=body)


def list_failed_operations(status: str | None) -> Call[m.FailedOperationList]:
    params = {"status": status}
    return Call("GET", "/api/v1/admin/failed-operations", model(m.FailedOperationList), params=params)


def retry_failed_operation(op_id: str) -> Call[m.FailedOperationView]:
    path = f"/api/v1/admin/failed-operations/{segment(op_id)}/retry"
    return Call("POST", path, model(m.FailedOperationView))


def admin_usage(
    user_id: str | None, first_day: datetime | str | None, last_day: datetime | str | None
) -> Call[m.AdminUsageView]:
    params = {"user_id": user_id, "from": _iso(first_day), "to": _iso(last_day)}
    return Call("GET", "/api/v1/admin/usage", model(m.AdminUsageView), params=params)


def get_user_budget(user_id: str) -> Call[m.BudgetView]:
    return Call("GET", f"/api/v1/admin/budgets/{segment(user_id)}", model(m.BudgetView))


def set_user_budget(user_id: str, daily_tokens: int | None, monthly_tokens: int | None) -> Call[m.BudgetView]:
    body = {"daily_tokens": daily_tokens, "monthly_tokens": monthly_tokens}  # null = unlimited
    return Call("PUT", f"/api/v1/admin/budgets/{segment(user_id)}", model(m.BudgetView), json=body)


def clear_user_budget(user_id: str) -> Call[None]:
    return Call("DELETE", f"/api/v1/admin/budgets/{segment(user_id)}", no_content)


def audit_params(filters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in filters.items()}


def list_audit_events(filters: Mapping[str, Any]) -> Call[m.AuditEventList]:
    return Call("GET", "/api/v1/admin/audit", model(m.AuditEventList), params=audit_params(filters))


def verify_audit_chain() -> Call[m.AuditChainView]:
    return Call("GET", "/api/v1/admin/audit/verify", model(m.AuditChainView))


def export_audit_events(filters: Mapping[str, Any]) -> Call[list[dict[str, Any]]]:
    import json

    def parse(response: Any) -> list[dict[str, Any]]:
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    return Call("GET", "/api/v1/admin/audit/export", parse, params=audit_params(filters))
