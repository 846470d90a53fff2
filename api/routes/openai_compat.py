"""The OpenAI-compatible API over each person's agent: ``GET /v1/models`` and
``POST /v1/chat/completions`` (streaming and not), docs/openai.md.

A completion is a turn of the caller's agent through the same ``ChatSessionWorkflow``
as ``/api/v1/chat`` (knowledge, tools, approvals, budgets, audit: nothing bypassed), with
the same credentials (EntraID tokens, API keys). The agent's own history is the source of
truth: only the request's last user message is the turn; earlier messages are not
replayed into the session. ``X-Keel-Session-Id`` names the session (answered on every
response); ``Idempotency-Key`` makes a retried request the same turn (and, without a
session header, the same new session). Errors use OpenAI's envelope, with the status
decided before the first byte; after streaming began they come in-band, then ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import WorkflowUpdateHandle

from api import chat_gateway
from api.deps import AgentUser, ResourcesDep
from api.errors import ApiError
from api.openai_wire import ChatCompletionRequest, ChunkWriter, completion
from api.routes.chat import SESSION_ID, check_message, may_find_knowledge, public_turn
from api.state import ApiResources
from api.turn_stream import relay_turn
from core.errors import ErrorCode, KeelError, public_error
from core.models.agents import AgentDefinition
from core.models.audit import AuditEntry, AuditEvent
from core.models.chat import ChatResponse, TurnResult
from core.models.principal import Principal

router = APIRouter(prefix="/v1", tags=["openai"])
log = structlog.get_logger(__name__)

SESSION_HEADER = "X-Keel-Session-Id"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
_NAMESPACE = uuid.UUID("9d4a7f1e-5b8c-4e0b-9a57-3c1d2e8f6a40")


@dataclass(frozen=True)
class _Turn:
    """What one completion request resolves to before anything runs."""

    session_id: str
    turn_id: str
    agent: AgentDefinition
    message: str
    new: bool


def _last_user_message(body: ChatCompletionRequest) -> str:
    last = body.messages[-1]
    if last.role != "user":
        raise ApiError(ErrorCode.INVALID_REQUEST, "the last message must be the user's (role 'user')")
    text = last.text()
    if text is None:
        raise ApiError(ErrorCode.INVALID_REQUEST, "only text content is supported")
    if not text.strip():
        raise ApiError(ErrorCode.EMPTY_MESSAGE, "message is empty")
    return text


def _derived(principal: Principal, key: str, what: str) -> str:
    return uuid.uuid5(_NAMESPACE, f"{principal.user_id}\x00{key}\x00{what}").hex


async def _resolve(
    resources: ApiResources,
    principal: Principal,
    body: ChatCompletionRequest,
    session_header: str | None,
    idempotency_key: str | None,
) -> _Turn:
    message = _last_user_message(body)
    check_message(resources, message)
    try:
        agent = resources.agents.get(body.model)
    except KeelError as err:
        raise ApiError(
            ErrorCode.MODEL_NOT_FOUND, f"no agent named '{body.model}'; see GET /v1/models"
        ) from err
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ApiError(ErrorCode.INVALID_REQUEST, "Idempotency-Key: 1 to 200 visible ASCII characters")
    turn_id = _derived(principal, idempotency_key, "turn") if idempotency_key else chat_gateway.new_turn_id()
    if session_header is None:
        session_id = _derived(principal, idempotency_key, "session") if idempotency_key else None
        existing = (
            await resources.chats.get_session(session_id, user_id=principal.user_id) if session_id else None
        )
        if existing is None:
            return _Turn(session_id or chat_gateway.new_session_id(), turn_id, agent, message, new=True)
        return _Turn(existing.id, turn_id, agent, message, new=False)
    record = None
    if SESSION_ID.match(session_header):
        record = await resources.chats.get_session(session_header, user_id=principal.user_id)
    if record is None:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, "session not found")
    if record.agent != agent.name:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, f"session {record.id} runs agent '{record.agent}', not '{agent.name}'"
        )
    return _Turn(record.id, turn_id, agent, message, new=False)


async def _audit_start(resources: ApiResources, principal: Principal, turn: _Turn, user: str | None) -> None:
    if turn.new:
        await resources.audit.record(
            AuditEntry(
                event=AuditEvent.SESSION_STARTED,
                user_id=principal.user_id,
                session_id=turn.session_id,
                resource_type="session",
                resource_id=turn.session_id,
                details={"agent": turn.agent.name, "via": "openai", "openai_user": user},
                dedupe_key=f"session.started:{turn.session_id}",  # a retried request is one start
            )
        )


def _failed(result: ChatResponse) -> ApiError | None:
    """A turn that failed before answering is an error response (OpenAI clients expect one)."""
    if result.status not in ("failed", "cancelled") or result.error is None:
        return None
    code, message = public_error(result.error.code, result.error.message)
    return ApiError(code, message)


@router.get("/models", operation_id="openai_list_models")
async def list_models(principal: AgentUser, resources: ResourcesDep) -> dict[str, Any]:
    """The agents I may use, as OpenAI models (``id`` = the agent's name)."""
    return {
        "object": "list",
        "data": [
            {"id": a.name, "object": "model", "created": 0, "owned_by": "keel", "description": a.description}
            for a in resources.agents.all()
        ],
    }


@router.post("/chat/completions", operation_id="openai_chat_completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: AgentUser,
    resources: ResourcesDep,
    x_keel_session_id: Annotated[str | None, Header(alias=SESSION_HEADER, max_length=64)] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> JSONResponse | EventSourceResponse:
    """A turn of the agent named by ``model``; ``stream: true`` for ``chat.completion.chunk`` events."""
    turn = await _resolve(resources, principal, body, x_keel_session_id, idempotency_key)
    log.info("openai.completion", session_id=turn.session_id, turn_id=turn.turn_id, openai_user=body.user)
    search_knowledge = await may_find_knowledge(resources, principal, None)
    handle = await chat_gateway.start_turn(
        resources.temporal,
        resources.settings,
        principal=principal,
        session_id=turn.session_id,
        message=turn.message,
        turn_id=turn.turn_id,
        search_knowledge=search_knowledge,
        agent=turn.agent,
        existing=not turn.new,
    )
    await _audit_start(resources, principal, turn, body.user)
    headers = {SESSION_HEADER: turn.session_id}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _stream(resources, handle, turn, include_usage, headers)
    result = public_turn(
        await chat_gateway.turn_result(handle, timeout_s=resources.settings.request_timeout_s)
    )
    failed = _failed(result)
    if failed is not None:
        failed.headers.update(headers)
        raise failed
    return JSONResponse(completion(result, model=turn.agent.name), headers=headers)


def _stream(
    resources: ApiResources,
    handle: WorkflowUpdateHandle[TurnResult],
    turn: _Turn,
    include_usage: bool,
    headers: dict[str, str],
) -> EventSourceResponse:
    result_task = asyncio.ensure_future(handle.result())
    result_task.add_done_callback(lambda t: None if t.cancelled() else t.exception())

    async def finished_turn() -> TurnResult | None:
        if not result_task.done() or result_task.cancelled() or result_task.exception() is not None:
            return None
        return result_task.result()

    writer = ChunkWriter(turn_id=turn.turn_id, model=turn.agent.name, include_usage=include_usage)

    async def chunks() -> AsyncIterator[ServerSentEvent]:
        ended = False
        try:
            async for event in relay_turn(
                resources.events,
                turn.turn_id,
                finished_turn=finished_turn,
                timeout_s=resources.settings.request_timeout_s,
            ):
                data = json.loads(str(event.data)) if event.data else {}
                out, ended = writer.translate(str(event.event), data)
                for chunk in out:
                    yield ServerSentEvent(data=chunk)
                if ended:
                    break
            if not ended:  # the relay paused at an approval: this completion ends here
                for chunk in writer.awaiting_approval_end(turn.session_id):
                    yield ServerSentEvent(data=chunk)
            yield ServerSentEvent(data="[DONE]")
        finally:
            if not result_task.done():
                result_task.cancel()  # the turn goes on in the workflow; only our wait stops

    return EventSourceResponse(chunks(), ping=15, headers=headers)
