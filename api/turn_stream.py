"""Relay a turn's Redis event stream as Server-Sent Events.

Every event carries its Redis stream id as the SSE ``id:``, so a client that
reconnects with ``Last-Event-ID`` resumes exactly after the last event it saw.
If the stream is gone (expired, or Redis lost it) or Redis is down, the finished
turn still arrives: the relay falls back to the Update's result or the stored turn. A relay
stops at ``approval.required`` only while the turn still waits there: replaying a
turn whose approvals were decided runs on to its last event.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from sse_starlette import ServerSentEvent

from core.errors import ErrorCode, public_error
from core.models.chat import TurnResult
from infra.turn_events import TurnEvent, TurnEventStream

LAST_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_BLOCK_MS = 500

#: Returns the finished turn if it is known to be finished, else None.
FinishedTurn = Callable[[], Awaitable[TurnResult | None]]
#: Whether the approval with this id still waits for a decision.
ApprovalPending = Callable[[str], Awaitable[bool]]


def _public(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """An ``error`` event as a client may see it (see :func:`core.errors.public_error`)."""
    if event != "error":
        return data
    code, message = public_error(str(data.get("code", "")), str(data.get("message", "")))
    return {**data, "code": code, "message": message}


def _final_events(result: TurnResult, *, warned: bool) -> list[ServerSentEvent]:
    if result.status in ("failed", "cancelled") and result.error is not None:
        code, message = public_error(result.error.code, result.error.message)
        data = {"turn_id": result.turn_id, "code": code, "message": message}
        return [ServerSentEvent(data=json.dumps(data), event="error")]
    events: list[ServerSentEvent] = []
    if result.budget_warning is not None and not warned:
        warning = {"turn_id": result.turn_id, **result.budget_warning.model_dump(mode="json")}
        events.append(ServerSentEvent(data=json.dumps(warning), event="budget.warning"))
    events.append(ServerSentEvent(data=json.dumps(result.model_dump(mode="json")), event="turn.completed"))
    return events


async def _still_waiting(
    events: TurnEventStream,
    turn_id: str,
    batch: list[TurnEvent],
    index: int,
    approval_pending: ApprovalPending | None,
) -> bool:
    """Whether the turn still waits at this ``approval.required``: no event came after it
    (its approvals were decided and the turn went on) and its approval is still pending."""
    if index + 1 < len(batch) or await events.read(turn_id, after=batch[index].id, count=1):
        return False
    approval_id = batch[index].data.get("id")
    return approval_pending is None or not isinstance(approval_id, str) or await approval_pending(approval_id)


async def relay_turn(
    events: TurnEventStream,
    turn_id: str,
    *,
    after: str = "0-0",
    finished_turn: FinishedTurn,
    timeout_s: float,
    stop_at_approval: bool = True,
    approval_pending: ApprovalPending | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """``stop_at_approval``: end after an ``approval.required`` while the turn waits there
    (``approval_pending``, when given, tells a decided approval apart from a pending one;
    without it only events after the pause show that it is over)."""
    deadline = time.monotonic() + timeout_s
    last = after
    warned = False  # a budget.warning was relayed (the fallback result must not repeat it)
    while time.monotonic() < deadline:
        try:
            batch = await events.read(turn_id, after=last, block_ms=_BLOCK_MS)
        except (RedisError, OSError):
            # Redis is down: keep trying, and end with the finished turn once there is one.
            await asyncio.sleep(_BLOCK_MS / 1000)
            batch = []
        for index, event in enumerate(batch):
            last = event.id
            warned = warned or event.event == "budget.warning"
            yield ServerSentEvent(
                data=json.dumps(_public(event.event, event.data)), event=event.event, id=event.id
            )
            if event.terminal:
                return
            if (
                event.pauses
                and stop_at_approval
                and await _still_waiting(events, turn_id, batch, index, approval_pending)
            ):
                return
        if batch:
            continue
        finished = await finished_turn()
        if finished is not None and finished.status != "awaiting_approval":
            # Drain what may have landed since the last read, then end with the result.
            for event in await _read_or_nothing(events, turn_id, last):
                warned = warned or event.event == "budget.warning"
                data = _public(event.event, event.data)
                yield ServerSentEvent(data=json.dumps(data), event=event.event, id=event.id)
                if event.terminal:
                    return
            for final in _final_events(finished, warned=warned):
                yield final
            return
    data = {
        "turn_id": turn_id,
        "code": ErrorCode.TIMEOUT,
        "message": "the stream timed out; the turn goes on",
    }
    yield ServerSentEvent(data=json.dumps(data), event="error")


async def _read_or_nothing(events: TurnEventStream, turn_id: str, after: str) -> list[TurnEvent]:
    try:
        return await events.read(turn_id, after=after)
    except (RedisError, OSError):
        return []
