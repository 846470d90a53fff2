"""What both stream classes share: where the turn is, and when a stream has ended well."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from keel_sdk._models import ChatResponse
from keel_sdk.errors import APIConnectionError
from keel_sdk.events import PAUSE, TERMINAL, StreamEvent, TurnCompleted, TurnStarted


@dataclass
class StreamState:
    session_id: str | None = None
    turn_id: str | None = None
    last_event_id: str | None = None
    response: ChatResponse | None = None  # the finished turn, once turn.completed arrived
    finished: bool = False  # turn.completed or error arrived
    paused: bool = False  # the last event was approval.required

    def take_headers(self, response: httpx.Response) -> None:
        self.session_id = response.headers.get("x-session-id") or self.session_id
        self.turn_id = response.headers.get("x-turn-id") or self.turn_id

    def see(self, event: StreamEvent) -> None:
        if event.event_id is not None:
            self.last_event_id = event.event_id
        if isinstance(event, TurnStarted):
            self.session_id, self.turn_id = event.session_id, event.turn_id
        if isinstance(event, TurnCompleted):
            self.response = event.response
        self.finished = event.event in TERMINAL
        self.paused = event.event in PAUSE

    @property
    def ended(self) -> bool:
        """The server ended the stream on purpose (the last event, or a pending approval)."""
        return self.finished or self.paused

    def resume_target(self, cause: BaseException | None) -> tuple[str, str]:
        if self.session_id is None or self.turn_id is None:
            raise APIConnectionError("the stream broke before it named its turn") from cause
        return self.session_id, self.turn_id
