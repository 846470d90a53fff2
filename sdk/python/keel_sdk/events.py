"""The typed events of a chat stream (docs/api.md "POST /api/v1/chat/stream", Events).

Every event has ``event`` (its SSE name) and ``event_id`` (the SSE ``id:``, the value to
resume after; None on the few events the server sends without one). Payloads that the
OpenAPI document describes reuse its generated models. An event name this version does
not know arrives as :class:`UnknownEvent` (clients should ignore events they do not know).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict

from keel_sdk import _models
from keel_sdk.sse import ServerSentEvent


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: ClassVar[str] = ""
    event_id: str | None = None

    @property
    def event(self) -> str:
        return self.name


class TurnStarted(_Event):
    name: ClassVar[str] = "turn.started"
    session_id: str
    turn_id: str


class Citation(_models.Citation, _Event):
    """One cited chunk (before the first delta); also a :class:`keel_sdk.models.Citation`."""

    name: ClassVar[str] = "citation"
    turn_id: str


class MessageDelta(_Event):
    """The next piece of the answer of model call ``step``: append :attr:`text`."""

    name: ClassVar[str] = "message.delta"
    turn_id: str
    step: int
    delta: str

    @property
    def text(self) -> str:
        return self.delta


class MessageReset(_Event):
    """Model call ``step`` is retried: drop the text received so far for that step."""

    name: ClassVar[str] = "message.reset"
    turn_id: str
    step: int
    reason: str = "retry"


class ApprovalRequired(_models.ApprovalView, _Event):
    """A tool call waits for a human; a live stream ends here while it waits (decide it,
    then follow the turn again with ``turns.events(..., last_event_id=event.event_id)``)."""

    name: ClassVar[str] = "approval.required"


class ApprovalDecided(_Event):
    name: ClassVar[str] = "approval.decided"
    turn_id: str
    id: str
    tool: str
    arguments: dict[str, Any] = {}
    status: str  # approved | denied | expired
    decided_by: str | None = None
    decided_by_name: str | None = None


class BudgetWarning(_models.BudgetWarning, _Event):
    name: ClassVar[str] = "budget.warning"
    turn_id: str


class TurnCompleted(_Event):
    """The last event: the finished turn, exactly as ``POST /chat`` answers it."""

    name: ClassVar[str] = "turn.completed"
    response: _models.ChatResponse


class Error(_Event):
    """The last event of a failed or cancelled turn (``code`` as in ``ChatResponse.error``),
    or of a stream that gave up waiting (``code == "timeout"``, no ``event_id``: the turn
    goes on; follow it again with ``turns.events``)."""

    name: ClassVar[str] = "error"
    turn_id: str | None = None
    code: str
    message: str


class UnknownEvent(_Event):
    """An event this version of the SDK does not know: its name and raw data."""

    raw_event: str
    data: Any = None

    @property
    def event(self) -> str:
        return self.raw_event


StreamEvent = (
    TurnStarted
    | Citation
    | MessageDelta
    | MessageReset
    | ApprovalRequired
    | ApprovalDecided
    | BudgetWarning
    | TurnCompleted
    | Error
    | UnknownEvent
)

_KINDS: dict[str, type[_Event]] = {
    cls.name: cls
    for cls in (
        TurnStarted,
        Citation,
        MessageDelta,
        MessageReset,
        ApprovalRequired,
        ApprovalDecided,
        BudgetWarning,
        Error,
    )
}
TERMINAL = frozenset({"turn.completed", "error"})
PAUSE = frozenset({"approval.required"})


def parse_event(sse: ServerSentEvent) -> StreamEvent:
    """The typed event for one SSE message."""
    try:
        data: Any = json.loads(sse.data) if sse.data else None
    except ValueError:
        return UnknownEvent(raw_event=sse.event, data=sse.data, event_id=sse.id)
    if sse.event == "turn.completed" and isinstance(data, dict):
        return TurnCompleted(response=_models.ChatResponse.model_validate(data), event_id=sse.id)
    kind = _KINDS.get(sse.event)
    if kind is None or not isinstance(data, dict):
        return UnknownEvent(raw_event=sse.event, data=data, event_id=sse.id)
    return cast(StreamEvent, kind.model_validate({**data, "event_id": sse.id}))
