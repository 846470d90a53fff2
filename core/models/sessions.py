"""What a client reads of a session: its summary, transcript and turns.

These are the public fields only. The Postgres records (``infra.db.chat_repo``)
extend them with what the API must not show (the owner's id, message metadata,
a turn's stored result); a route returns the record and its ``response_model``
(one of these) serialises just the public fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, field_serializer

from core.errors import public_error

StoredTurnStatus = Literal["running", "completed", "awaiting_approval", "failed", "cancelled"]


class SessionSummary(BaseModel):
    id: str
    title: str
    agent: str
    agent_version: str | None = None
    turn_count: int
    created_at: datetime
    updated_at: datetime


class SessionTotals(SessionSummary):
    """The summary and the session's token counts (shown by ``GET /sessions/{id}``)."""

    prompt_tokens: int
    completion_tokens: int


class TranscriptMessage(BaseModel):
    id: int
    turn_id: str
    role: str
    content: str
    created_at: datetime


class TurnSummary(BaseModel):
    id: str
    status: StoredTurnStatus
    error_code: str | None = None
    created_at: datetime
    completed_at: datetime | None = None

    @field_serializer("error_code")
    def _public_code(self, code: str | None) -> str | None:
        """A stored code Keel does not know (an exception class name) is shown as internal_error."""
        return None if code is None else public_error(code, "")[0]
