"""ChatSessionWorkflow (id ``chat-{session_id}``): one per conversation.

Each user message arrives as the ``send_message`` Update and returns the
finished turn (or ``awaiting_approval`` while a tool call waits for a human).
Turns run one at a time in arrival order. The workflow ends after an idle
timeout (a new message restarts it with update-with-start), on ``delete``, and
continues-as-new when Temporal suggests it, carrying a summary.

This module is the session's lifecycle and its handlers. One turn's steps are in
:mod:`workflows.chat_turn`, approvals in :mod:`workflows.chat_approvals`, and all
I/O in :mod:`activities.chat`, :mod:`activities.budget` and :mod:`activities.tools`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import activity_presets
from workflows.chat_approvals import Approvals
from workflows.chat_turn import ChatTurn

with workflow.unsafe.imports_passed_through():
    # Models are passed through so the sandbox and the data converter share one class.
    from core.errors import ErrorCode
    from core.models.chat import (
        AssistantMessage,
        CancelTurn,
        ChatSessionInput,
        ChatSessionOutput,
        DeleteSessionInput,
        DeleteSessionRequest,
        DeleteSessionResult,
        EndSessionInput,
        SessionCarry,
        SessionState,
        TurnRequest,
        TurnResult,
    )
    from core.models.tools import ApprovalDecision, ApprovalView
    from workflows.activity_defs import ChatActivities

#: How many recent turn ids a run remembers to refuse replays of a finished turn.
_RECENT_TURNS = 64


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
        self._seen_turn_ids: set[str] = set(self._carry.recent_turn_ids)
        self._deleted = False
        self._approvals = Approvals(inp)
        self._turn = ChatTurn(inp, self._approvals)

    # ------------------------------------------------------------------ run
    @workflow.run
    async def run(self, inp: ChatSessionInput) -> ChatSessionOutput:
        idle = timedelta(seconds=inp.limits.idle_timeout_s)
        while not self._deleted:
            try:
                # The idle timer runs only while no turn is queued or running: one timer per idle
                # spell, started when the last turn ends (not re-armed as each turn starts and ends).
                await workflow.wait_condition(lambda: self._queued > 0 or self._deleted, timeout=idle)
            except TimeoutError:
                if self._queued == 0:
                    break
            await workflow.wait_condition(lambda: self._queued == 0 or self._deleted)
            if workflow.info().is_continue_as_new_suggested() and not self._deleted:
                await workflow.wait_condition(lambda: self._queued == 0 and workflow.all_handlers_finished())
                workflow.continue_as_new(inp.model_copy(update={"carry": self._carry}))
        await workflow.wait_condition(workflow.all_handlers_finished)
        reason = "deleted" if self._deleted else "idle"
        if not self._deleted:
            # A deletion is audited by the API that asked for it; an idle end only the workflow sees.
            await workflow.execute_local_activity_method(
                ChatActivities.end_session,
                EndSessionInput(
                    session_id=inp.session_id,
                    user_id=inp.user_id,
                    run_id=workflow.info().run_id,
                    reason=reason,
                    turn_count=self._carry.turn_count,
                ),
                **activity_presets.DATABASE,
            )
        return ChatSessionOutput(session_id=inp.session_id, turn_count=self._carry.turn_count, reason=reason)

    # ------------------------------------------------------------- messages
    @workflow.update
    async def send_message(self, req: TurnRequest) -> TurnResult:
        """Returns the finished turn, or ``awaiting_approval`` as soon as a tool call waits
        for a human; the turn then goes on in the workflow and finishes after the decision."""
        self._queued += 1
        self._seen_turn_ids.add(req.turn_id)
        turn = asyncio.ensure_future(self._locked_turn(req))
        await workflow.wait_condition(lambda: turn.done() or self._approvals.all_announced(req.turn_id))
        if turn.done():
            return turn.result()
        return TurnResult(
            session_id=self._input.session_id,
            turn_id=req.turn_id,
            status="awaiting_approval",
            message=AssistantMessage(content=""),
            tool_calls=list(self._turn.records.get(req.turn_id, [])),
            approvals=self._approvals.awaiting(req.turn_id),
        )

    async def _locked_turn(self, req: TurnRequest) -> TurnResult:
        try:
            async with self._turn_lock:
                if self._deleted:
                    raise ApplicationError("session was deleted", type=ErrorCode.SESSION_NOT_FOUND)
                result = await self._turn.run(req)
        finally:
            self._queued -= 1
            self._turn.forget(req.turn_id)
        self._remember(result)
        return result

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

    @workflow.signal
    def cancel_turn(self, req: CancelTurn) -> None:
        """Stop a running or queued turn; it finishes ``cancelled``."""
        self._turn.cancel(req.turn_id)

    # ------------------------------------------------------------ approvals
    @workflow.update
    async def decide_approval(self, decision: ApprovalDecision) -> ApprovalView:
        """An authorised approver's decision (the API checked who may decide); answers the
        approval once it is stored ``approved`` or ``denied``."""
        return await self._approvals.decide(decision)

    @decide_approval.validator
    def _validate_decision(self, decision: ApprovalDecision) -> None:
        self._approvals.validate(decision)

    @workflow.query
    def pending_approvals(self) -> list[ApprovalView]:
        return self._approvals.pending()

    # -------------------------------------------------------------- session
    @workflow.update
    async def delete(self, req: DeleteSessionRequest) -> DeleteSessionResult:
        inp = self._input
        self._deleted = True
        self._turn.stop_all()
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

    @workflow.query
    def state(self) -> SessionState:
        inp = self._input
        return SessionState(
            session_id=inp.session_id,
            user_id=inp.user_id,
            turn_count=self._carry.turn_count,
            active_turn_id=self._turn.active_turn_id,
            queued_turns=self._queued,
            deleted=self._deleted,
        )

    def _remember(self, result: TurnResult) -> None:
        carry = self._carry
        carry.turn_count += 1
        carry.prompt_tokens += result.usage.prompt_tokens
        carry.completion_tokens += result.usage.completion_tokens
        carry.last_turn_at = workflow.now()
        carry.recent_turn_ids = [*carry.recent_turn_ids, result.turn_id][-_RECENT_TURNS:]
