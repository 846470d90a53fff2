"""POST /chat and POST /chat/stream: a user message becomes a workflow Update."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from api import chat_gateway
from api.deps import AgentUser, ResourcesDep
from api.errors import ApiError
from api.schemas import ChatRequest
from api.state import ApiResources
from api.turn_stream import relay_turn
from core.errors import ErrorCode, KeelError, public_error
from core.models.agents import AgentDefinition
from core.models.audit import AuditEntry, AuditEvent
from core.models.chat import ChatResponse, TurnError, TurnResult
from core.models.principal import Principal
from core.policy.acl import acl_filter

router = APIRouter(prefix="/api/v1/chat", tags=["chat"])

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


async def _session_for(
    resources: ApiResources, principal: Principal, body: ChatRequest
) -> tuple[str, AgentDefinition]:
    """(session id, the agent it runs): a new session takes ``agent`` (or the default);
    an existing one keeps the agent it was started with."""
    if body.session_id is None:
        name = body.agent or resources.settings.default_agent
        try:
            return chat_gateway.new_session_id(), resources.agents.get(name)
        except KeelError as err:
            raise ApiError(ErrorCode.INVALID_REQUEST, err.message) from err
    record = None
    if SESSION_ID.match(body.session_id):
        record = await resources.chats.get_session(body.session_id, user_id=principal.user_id)
    if record is None:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, "session not found")
    try:
        agent = resources.agents.get(record.agent)
    except KeelError:
        agent = resources.agents.get(resources.settings.default_agent)  # its definition was removed
    return record.id, agent


def check_message(resources: ApiResources, message: str) -> None:
    # Blank messages are refused by the schema (empty_message); the limit is a setting.
    limit = resources.settings.chat_max_message_chars
    if len(message) > limit:
        raise ApiError(
            ErrorCode.MESSAGE_TOO_LARGE, f"message has {len(message)} characters; the limit is {limit}"
        )


async def may_find_knowledge(resources: ApiResources, principal: Principal, kb_ids: list[str] | None) -> bool:
    return await resources.knowledge_repo.any_readable_ready(
        acl_filter(principal, knowledge_base_ids=kb_ids or None)
    )


async def _session_and_knowledge(
    resources: ApiResources, principal: Principal, body: ChatRequest
) -> tuple[tuple[str, AgentDefinition], bool]:
    """The session (see :func:`_session_for`) and whether knowledge search may find
    anything: two independent reads, made concurrently."""
    session = _session_for(resources, principal, body)
    return await asyncio.gather(session, may_find_knowledge(resources, principal, body.knowledge_base_ids))


async def _audit_new_session(
    resources: ApiResources, principal: Principal, body: ChatRequest, session_id: str, agent: AgentDefinition
) -> None:
    if body.session_id is None:
        await resources.audit.record(
            AuditEntry(
                event=AuditEvent.SESSION_STARTED,
                user_id=principal.user_id,
                session_id=session_id,
                resource_type="session",
                resource_id=session_id,
                details={"agent": agent.name},
            )
        )


def public_turn(result: TurnResult) -> ChatResponse:
    """The turn as a client may see it: its ``error`` through ``public_error``."""
    if result.error is None:
        return result
    code, message = public_error(result.error.code, result.error.message)
    return result.model_copy(update={"error": TurnError(code=code, message=message)})


@router.post("", operation_id="chat", response_model=ChatResponse)
async def chat(body: ChatRequest, principal: AgentUser, resources: ResourcesDep) -> ChatResponse:
    """Send a message and wait for the finished turn."""
    check_message(resources, body.message)
    (session_id, agent), search_knowledge = await _session_and_knowledge(resources, principal, body)
    timeout_s = resources.settings.request_timeout_s
    if body.session_id is not None:  # a follow-up: delivered and answered in one call
        result = await chat_gateway.run_follow_up(
            resources.temporal,
            resources.settings,
            principal=principal,
            session_id=session_id,
            message=body.message,
            turn_id=chat_gateway.new_turn_id(),
            knowledge_base_ids=body.knowledge_base_ids,
            search_knowledge=search_knowledge,
            agent=agent,
            timeout_s=timeout_s,
        )
        return public_turn(result)
    handle = await chat_gateway.start_turn(
        resources.temporal,
        resources.settings,
        principal=principal,
        session_id=session_id,
        message=body.message,
        turn_id=chat_gateway.new_turn_id(),
        knowledge_base_ids=body.knowledge_base_ids,
        search_knowledge=search_knowledge,
        agent=agent,
    )
    await _audit_new_session(resources, principal, body, session_id, agent)
    result = await chat_gateway.turn_result(handle, timeout_s=timeout_s)
    return public_turn(result)


@router.post(
    "/stream",
    operation_id="chat_stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events of the turn"}},
)
async def chat_stream(
    body: ChatRequest, principal: AgentUser, resources: ResourcesDep
) -> EventSourceResponse:
    """Send a message and stream the turn: ``turn.started``, ``message.delta``, …, ``turn.completed``.

    Each event has an ``id:``; resume with ``GET /api/v1/sessions/{id}/turns/{turn_id}/events``
    and ``Last-Event-ID``.
    """
    check_message(resources, body.message)
    (session_id, agent), search_knowledge = await _session_and_knowledge(resources, principal, body)
    turn_id = chat_gateway.new_turn_id()
    handle = await chat_gateway.start_turn(
        resources.temporal,
        resources.settings,
        principal=principal,
        session_id=session_id,
        message=body.message,
        turn_id=turn_id,
        knowledge_base_ids=body.knowledge_base_ids,
        search_knowledge=search_knowledge,
        agent=agent,
        existing=body.session_id is not None,
    )
    await _audit_new_session(resources, principal, body, session_id, agent)
    result_task = asyncio.ensure_future(handle.result())
    # The relay may stop waiting early; the outcome is then read here so it is never left unretrieved.
    result_task.add_done_callback(lambda t: None if t.cancelled() else t.exception())

    async def finished_turn() -> TurnResult | None:
        if not result_task.done() or result_task.cancelled() or result_task.exception() is not None:
            return None
        return result_task.result()

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in relay_turn(
                resources.events,
                turn_id,
                finished_turn=finished_turn,
                timeout_s=resources.settings.request_timeout_s,
            ):
                yield event
        finally:
            if not result_task.done():
                result_task.cancel()  # the turn goes on in the workflow; only our wait stops

    return EventSourceResponse(events(), ping=15, headers={"X-Session-ID": session_id, "X-Turn-ID": turn_id})
