"""ChatSessionWorkflow (id ``chat-{session_id}``): one per conversation.

Each user message arrives as the ``send_message`` Update and returns the
finished turn. Turns run one at a time in arrival order. The workflow ends
after an idle timeout (a new message restarts it with update-with-start), on
``delete``, and continues-as-new when Temporal suggests it, carrying a summary.

Path of a turn: ``begin_turn`` (persist the user message) with ``retrieve``
(knowledge search, concurrently) → ``call_llm``
(stream the model's answer into Redis) → ``complete_turn`` (persist the answer,
publish ``turn.completed``). All I/O is in :mod:`activities.chat`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    # Models are passed through so the sandbox and the data converter share one class.
    from activities.chat import ChatActivities
    from core.errors import ErrorCode
    from core.models.chat import (
        AssistantMessage,
        BeginTurnInput,
        CancelTurn,
        ChatSessionInput,
        ChatSessionOutput,
        Citation,
        CompleteTurnInput,
        DeleteSessionInput,
        DeleteSessionRequest,
        DeleteSessionResult,
        LlmCallInput,
        LlmCallResult,
        RetrieveInput,
        SessionCarry,
        SessionState,
        TurnError,
        TurnRequest,
        TurnResult,
    )

ActivitiesT = TypeVar("ActivitiesT")
InputT = TypeVar("InputT")

#: How many recent turn ids a run remembers to refuse replays of a finished turn.
_RECENT_TURNS = 64
#: Knowledge search reads the start of the message only.
_QUERY_CHARS = 2000


@workflow.defn
class ChatSessionWorkflow:
    @workflow.init
    def __init__(self, inp: ChatSessionInput) -> None:
        # Handlers may run before ``run`` in the first task (update-with-start),
        # so the input is taken here.
        self._input = inp
        self._carry = inp.carry or SessionCarry()
        self._turn_lock = asyncio.Lock()
        self._queued = 0
        self._active_turn_id: str | None = None
        self._active_llm: workflow.ActivityHandle[LlmCallResult] | None = None
        self._cancel_requested: set[str] = set()
        self._seen_turn_ids: set[str] = set(self._carry.recent_turn_ids)
        self._deleted = False
        self._activity_seen = False

    # ------------------------------------------------------------------ run
    @workflow.run
    async def run(self, inp: ChatSessionInput) -> ChatSessionOutput:
        idle = timedelta(seconds=inp.limits.idle_timeout_s)
        while not self._deleted:
            try:
                await workflow.wait_condition(lambda: self._activity_seen or self._deleted, timeout=idle)
            except TimeoutError:
                if self._queued == 0:
                    break
                continue
            self._activity_seen = False
            if workflow.info().is_continue_as_new_suggested() and not self._deleted:
                await workflow.wait_condition(lambda: self._queued == 0 and workflow.all_handlers_finished())
                workflow.continue_as_new(inp.model_copy(update={"carry": self._carry}))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ChatSessionOutput(
            session_id=inp.session_id,
            turn_count=self._carry.turn_count,
            reason="deleted" if self._deleted else "idle",
        )

    # ------------------------------------------------------------- handlers
    @workflow.update
    async def send_message(self, req: TurnRequest) -> TurnResult:
        self._queued += 1
        self._activity_seen = True
        self._seen_turn_ids.add(req.turn_id)
        try:
            async with self._turn_lock:
                if self._deleted:
                    raise ApplicationError("session was deleted", type=ErrorCode.SESSION_NOT_FOUND)
                return await self._run_turn(req)
        finally:
            self._queued -= 1
            self._activity_seen = True

    @send_message.validator
    def _validate_message(self, req: TurnRequest) -> None:
        inp = self._input
        if req.user_id != inp.user_id:
            # Never reveal that the session exists to someone else.
            raise ApplicationError("session not found", type=ErrorCode.SESSION_NOT_FOUND)
        if self._deleted:
            raise ApplicationError("session not found", type=ErrorCode.SESSION_NOT_FOUND)
        if not req.message.strip():
            raise ApplicationError("message is empty", type=ErrorCode.EMPTY_MESSAGE)
        if len(req.message) > inp.limits.max_message_chars:
            raise ApplicationError(
                f"message has {len(req.message)} characters; the limit is {inp.limits.max_message_chars}",
                type=ErrorCode.MESSAGE_TOO_LARGE,
            )
        age = workflow.now() - req.submitted_at
        if age > timedelta(seconds=inp.limits.max_request_age_s) or req.turn_id in self._seen_turn_ids:
            raise ApplicationError(
                "this message is stale or was already processed", type=ErrorCode.STALE_REQUEST
            )
        if self._queued >= inp.limits.max_queued_turns:
            raise ApplicationError("too many messages are already waiting", type=ErrorCode.SESSION_BUSY)

    @workflow.update
    async def delete(self, req: DeleteSessionRequest) -> DeleteSessionResult:
        inp = self._input
        self._deleted = True
        if self._active_llm is not None:
            self._active_llm.cancel()
        async with self._turn_lock:
            await workflow.execute_activity_method(
                ChatActivities.delete_session,
                DeleteSessionInput(session_id=inp.session_id, user_id=inp.user_id),
                **activity_presets.DATABASE,
            )
        return DeleteSessionResult(session_id=inp.session_id, deleted=True)

    @delete.validator
    def _validate_delete(self, req: DeleteSessionRequest) -> None:
        if req.user_id != self._input.user_id:
            raise ApplicationError("session not found", type=ErrorCode.SESSION_NOT_FOUND)

    @workflow.signal
    def cancel_turn(self, req: CancelTurn) -> None:
        self._cancel_requested.add(req.turn_id)
        if req.turn_id == self._active_turn_id and self._active_llm is not None:
            self._active_llm.cancel()

    @workflow.query
    def state(self) -> SessionState:
        inp = self._input
        return SessionState(
            session_id=inp.session_id,
            user_id=inp.user_id,
            turn_count=self._carry.turn_count,
            active_turn_id=self._active_turn_id,
            queued_turns=self._queued,
            deleted=self._deleted,
        )

    # ----------------------------------------------------------------- turn
    async def _run_turn(self, req: TurnRequest) -> TurnResult:
        inp = self._input
        self._active_turn_id = req.turn_id
        try:
            begin = self._write(
                ChatActivities.begin_turn,
                BeginTurnInput(
                    session_id=inp.session_id,
                    user_id=inp.user_id,
                    turn_id=req.turn_id,
                    message=req.message,
                    agent=inp.agent,
                ),
            )
            # Persisting the message and searching knowledge are independent: run them together.
            _, (citations, retrieval_failed) = await asyncio.gather(begin, self._retrieve(req))
            result = await self._model_answer(req.turn_id, citations, retrieval_failed=retrieval_failed)
            await self._write(
                ChatActivities.complete_turn,
                CompleteTurnInput(
                    session_id=inp.session_id, user_id=inp.user_id, turn_id=req.turn_id, result=result
                ),
            )
        finally:
            self._active_turn_id = None
            self._active_llm = None
        self._remember(result)
        return result

    async def _write(self, activity: Callable[[ActivitiesT, InputT], Awaitable[None]], arg: InputT) -> None:
        """A short idempotent Postgres write. Runs as a local activity (no task-queue round
        trip; retried by the same RetryPolicy) in runs that started with this change."""
        if workflow.patched("local-db-writes"):
            await workflow.execute_local_activity_method(activity, arg, **activity_presets.DATABASE)
        else:
            await workflow.execute_activity_method(activity, arg, **activity_presets.DATABASE)

    async def _retrieve(self, req: TurnRequest) -> tuple[list[Citation], bool]:
        """Knowledge search for this turn; (citations, whether the search failed)."""
        if not workflow.patched("turn-retrieval") or not req.search_knowledge:
            return [], False
        inp = self._input
        try:
            found = await workflow.execute_activity_method(
                ChatActivities.retrieve,
                RetrieveInput(
                    session_id=inp.session_id,
                    turn_id=req.turn_id,
                    user_id=inp.user_id,
                    query=req.message[:_QUERY_CHARS],
                    groups=req.groups,
                    knowledge_base_ids=req.knowledge_base_ids,
                ),
                **activity_presets.VECTOR,
            )
        except ActivityError:
            return [], True
        return found.citations, False

    async def _model_answer(
        self, turn_id: str, citations: list[Citation], *, retrieval_failed: bool
    ) -> TurnResult:
        inp = self._input
        models: list[str | None] = [None]
        if inp.fallback_model:
            models.append(inp.fallback_model)
        error = TurnError(code=ErrorCode.UPSTREAM_UNAVAILABLE, message="the model is unavailable")
        for model in models:
            if turn_id in self._cancel_requested:
                error = TurnError(code=ErrorCode.CANCELLED, message="the turn was cancelled")
                break
            self._active_llm = workflow.start_activity_method(
                ChatActivities.call_llm,
                LlmCallInput(
                    session_id=inp.session_id,
                    turn_id=turn_id,
                    model_override=model,
                    restream=model is not None,
                    context=citations,
                    retrieval_unavailable=retrieval_failed,
                ),
                **activity_presets.LLM_STREAM,
            )
            try:
                llm = await self._active_llm
            except ActivityError as err:
                error = _turn_error(err)
                if error.code in (ErrorCode.CANCELLED, ErrorCode.LLM_REJECTED):
                    break
                continue
            return TurnResult(
                session_id=inp.session_id,
                turn_id=turn_id,
                status="completed",
                message=AssistantMessage(content=llm.content, citations=citations),
                usage=llm.usage,
                model=llm.model,
                notice=llm.notice or (ErrorCode.RETRIEVAL_UNAVAILABLE if retrieval_failed else None),
            )
        return TurnResult(
            session_id=inp.session_id,
            turn_id=turn_id,
            status="failed",
            message=AssistantMessage(content=""),
            error=error,
        )

    def _remember(self, result: TurnResult) -> None:
        carry = self._carry
        carry.turn_count += 1
        carry.prompt_tokens += result.usage.prompt_tokens
        carry.completion_tokens += result.usage.completion_tokens
        carry.last_turn_at = workflow.now()
        carry.recent_turn_ids = [*carry.recent_turn_ids, result.turn_id][-_RECENT_TURNS:]


def _turn_error(err: ActivityError) -> TurnError:
    cause = err.cause
    if isinstance(cause, CancelledError):
        return TurnError(code=ErrorCode.CANCELLED, message="the turn was cancelled")
    if isinstance(cause, ActivityTimeoutError):
        return TurnError(code=ErrorCode.TIMEOUT, message="the model did not answer in time")
    if isinstance(cause, ApplicationError) and cause.type:
        return TurnError(code=cause.type, message=cause.message)
    return TurnError(code=ErrorCode.UPSTREAM_UNAVAILABLE, message="the model is unavailable")
