"""GET/DELETE sessions, a turn's events (resumption) and cancelling a turn. Reads come
from Postgres; a session or turn that is not the caller's answers 404, exactly like
one that does not exist."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse

from api import chat_gateway
from api.deps import AgentUser, ResourcesDep
from api.errors import ApiError
from api.routes.chat import SESSION_ID
from api.schemas import CancelAccepted, SessionDetail, SessionList, SessionRename
from api.state import ApiResources
from api.turn_stream import LAST_EVENT_ID, relay_turn
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.chat import TurnResult
from core.models.principal import Principal
from core.models.sessions import SessionSummary
from infra.db.chat_repo import SessionRecord

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])


async def _owned_session(resources: ApiResources, principal: Principal, session_id: str) -> SessionRecord:
    record = None
    if SESSION_ID.match(session_id):
        record = await resources.chats.get_session(session_id, user_id=principal.user_id)
    if record is None:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, "session not found")
    return record


@router.get("", operation_id="list_sessions", response_model=SessionList)
async def list_sessions(
    principal: AgentUser,
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: datetime | None = None,
) -> SessionList:
    records = await resources.chats.list_sessions(user_id=principal.user_id, limit=limit, before=before)
    next_before = records[-1].updated_at if len(records) == limit else None
    return SessionList(sessions=list(records), next_before=next_before)


@router.get("/{session_id}", operation_id="get_session", response_model=SessionDetail)
async def get_session(session_id: str, principal: AgentUser, resources: ResourcesDep) -> SessionDetail:
    record = await _owned_session(resources, principal, session_id)
    messages = await resources.chats.messages(session_id, user_id=principal.user_id)
    turns = await resources.chats.turns(session_id, user_id=principal.user_id)
    return SessionDetail(**record.model_dump(), messages=list(messages), turns=list(turns))


@router.patch("/{session_id}", operation_id="rename_session", response_model=SessionSummary)
async def rename_session(
    session_id: str, body: SessionRename, principal: AgentUser, resources: ResourcesDep
) -> SessionRecord:
    """Rename my session (its title in the sessions list)."""
    await _owned_session(resources, principal, session_id)
    record = await resources.chats.rename_session(session_id, user_id=principal.user_id, title=body.title)
    if record is None:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, "session not found")
    return record


@router.delete("/{session_id}", operation_id="delete_session", status_code=204)
async def delete_session(session_id: str, principal: AgentUser, resources: ResourcesDep) -> Response:
    await _owned_session(resources, principal, session_id)
    await chat_gateway.delete_session(
        resources.temporal, resources.settings, principal=principal, session_id=session_id
    )
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.SESSION_ENDED,
            user_id=principal.user_id,
            session_id=session_id,
            resource_type="session",
            resource_id=session_id,
            details={"reason": "deleted"},
        )
    )
    return Response(status_code=204)


@router.get(
    "/{session_id}/turns/{turn_id}/events",
    operation_id="turn_events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events of the turn"}},
)
async def turn_events(
    session_id: str,
    turn_id: str,
    principal: AgentUser,
    resources: ResourcesDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Replay a turn's events after ``Last-Event-ID`` (all of them without it), then follow it live."""
    await _owned_session(resources, principal, session_id)
    turn = await resources.chats.get_turn(turn_id, session_id=session_id, user_id=principal.user_id)
    if turn is None:
        raise ApiError(ErrorCode.TURN_NOT_FOUND, "turn not found")
    if last_event_id is not None and not LAST_EVENT_ID.match(last_event_id):
        raise ApiError(ErrorCode.INVALID_REQUEST, "Last-Event-ID must be an event id this API sent")

    async def finished_turn() -> TurnResult | None:
        current = await resources.chats.get_turn(turn_id, session_id=session_id, user_id=principal.user_id)
        if current is None or current.result is None:
            return None
        return TurnResult.model_validate(current.result)

    async def approval_pending(approval_id: str) -> bool:
        approval = await resources.tools_repo.approval(approval_id)
        return approval is not None and approval.status == "pending"

    return EventSourceResponse(
        relay_turn(
            resources.events,
            turn_id,
            after=last_event_id or "0-0",
            finished_turn=finished_turn,
            timeout_s=resources.settings.request_timeout_s,
            approval_pending=approval_pending,
        ),
        ping=15,
    )


@router.post(
    "/{session_id}/turns/{turn_id}/cancel",
    operation_id="cancel_turn",
    status_code=202,
    response_model=CancelAccepted,
)
async def cancel_turn(
    session_id: str, turn_id: str, principal: AgentUser, resources: ResourcesDep
) -> CancelAccepted:
    """Stop a running turn: its model call is cancelled, its stream ends with an ``error``
    event of code ``cancelled`` and the turn is stored ``cancelled``. A finished turn is 409."""
    await _owned_session(resources, principal, session_id)
    turn = await resources.chats.get_turn(turn_id, session_id=session_id, user_id=principal.user_id)
    if turn is None:
        raise ApiError(ErrorCode.TURN_NOT_FOUND, "turn not found")
    if turn.status not in ("running", "awaiting_approval") or not await chat_gateway.cancel_turn(
        resources.temporal, session_id=session_id, turn_id=turn_id
    ):
        raise ApiError(ErrorCode.STALE_REQUEST, f"this turn is already {turn.status}")
    return CancelAccepted(session_id=session_id, turn_id=turn_id)
