"""Audit events: the catalogue and the entry that crosses activity boundaries.

Every entry is written once to the hash-chained ``audit_events`` table and to the
JSON log stream (with trace id, user id and session id). ``dedupe_key`` makes a
write idempotent, so an activity retry never records an event twice.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AuditEvent(StrEnum):
    # identity
    LOGIN = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    LOGOUT = "auth.logout"
    TOKEN_REFRESH = "auth.token_refresh"
    API_KEY_CREATED = "api_key.created"
    API_KEY_ROTATED = "api_key.rotated"
    API_KEY_REVOKED = "api_key.revoked"
    # access decisions
    ACCESS_ALLOWED = "access.allowed"
    ACCESS_DENIED = "access.denied"
    # chat
    SESSION_STARTED = "session.started"
    SESSION_ENDED = "session.ended"
    TOOL_INVOKED = "tool.invoked"
    TOOL_APPROVAL_DECIDED = "tool.approval_decided"
    # documents
    DOCUMENT_UPLOADED = "document.uploaded"
    DOCUMENT_SHARED = "document.shared"
    DOCUMENT_UNSHARED = "document.unshared"
    DOCUMENT_DELETED = "document.deleted"
    # admin changes
    ADMIN_TOOL_ADDED = "admin.tool_added"
    ADMIN_TOOL_REMOVED = "admin.tool_removed"
    ADMIN_TOOL_UPDATED = "admin.tool_updated"
    ADMIN_KNOWLEDGE_BASE_CREATED = "admin.knowledge_base_created"
    ADMIN_DOCUMENT_PUBLISHED = "admin.document_published"
    ADMIN_BUDGET_SET = "admin.budget_set"
    ADMIN_BUDGET_CLEARED = "admin.budget_cleared"
    ADMIN_OPERATION_RETRIED = "admin.operation_retried"
    # the trail itself
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_PURGED = "audit.purged"


Outcome = Literal["success", "failure", "denied"]


class AuditEntry(BaseModel):
    """One event to record. Ids only in ``details``: never document text or secrets
    (tool parameters are redacted before they get here)."""

    model_config = ConfigDict(frozen=True)

    event: AuditEvent
    user_id: str | None = None
    outcome: Outcome = "success"
    session_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str | None = Field(default=None, max_length=512)
    trace_id: str | None = None
    request_id: str | None = None
