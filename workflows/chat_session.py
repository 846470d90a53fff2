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
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    # Models are passed through so the sandbox and the data converter share one class.
    from activities.budget import BudgetActivities
    from activities.chat import ChatActivities
    from activities.tools import ToolActivities
    from core.errors import ErrorCode
    from core.models.budget import BudgetWarning
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
        EndSessionInput,
        LlmCallInput,
        LlmCallResult,
        RetrieveInput,
        SessionCarry,
        SessionState,
        TurnError,
        TurnRequest,
        TurnResult,
        Usage,
    )
    from core.models.principal import Principal
    from core.models.reservations import (
        BudgetGrant,
        ReserveBudgetInput,
        SettleBudgetInput,
        SettleBudgetResult,
    )
    from core.models.tools import (
        ApprovalDecision,
        ApprovalStatus,
        ApprovalView,
        CallToolInput,
        ContextDocument,
        LoadToolsInput,
        LoadToolsResult,
        RecordApprovalInput,
        RefusalInput,
        ResolveApprovalInput,
        ToolCallRecord,
        ToolCallRequest,
        ToolDecision,
        ToolSpec,
        ToolStepInput,
    )
    from core.policy.tools import decide, untrusted_documents

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
        self._approvals: dict[str, ApprovalView] = {}
        self._decisions: dict[str, ApprovalDecision] = {}
        self._announced: set[str] = set()
        self._turn_records: dict[str, list[ToolCallRecord]] = {}
        self._budget_warnings: dict[str, BudgetWarning] = {}

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
        reason = "deleted" if self._deleted else "idle"
        if not self._deleted and workflow.patched("audit-session-end"):
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

    # ------------------------------------------------------------- handlers
    @workflow.update
    async def send_message(self, req: TurnRequest) -> TurnResult:
        """Returns the finished turn, or ``awaiting_approval`` as soon as a tool call waits
        for a human; the turn then goes on in the workflow and finishes after the decision."""
        self._queued += 1
        self._activity_seen = True
        self._seen_turn_ids.add(req.turn_id)
        if not workflow.patched("tool-loop"):
            return await self._locked_turn(req)
        turn = asyncio.ensure_future(self._locked_turn(req))
        await workflow.wait_condition(lambda: turn.done() or self._all_announced(req.turn_id))
        if turn.done():
            return turn.result()
        return TurnResult(
            session_id=self._input.session_id,
            turn_id=req.turn_id,
            status="awaiting_approval",
            message=AssistantMessage(content=""),
            tool_calls=list(self._turn_records.get(req.turn_id, [])),
            approvals=self._awaiting(req.turn_id),
        )

    async def _locked_turn(self, req: TurnRequest) -> TurnResult:
        try:
            async with self._turn_lock:
                if self._deleted:
                    raise ApplicationError("session was deleted", type=ErrorCode.SESSION_NOT_FOUND)
                return await self._run_turn(req)
        finally:
            self._queued -= 1
            self._activity_seen = True
            self._turn_records.pop(req.turn_id, None)
            self._budget_warnings.pop(req.turn_id, None)

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
    def decide_approval(self, decision: ApprovalDecision) -> None:
        """An authorised approver's decision (the API checked who may decide)."""
        approval = self._approvals.get(decision.approval_id)
        if approval is not None and approval.status == "pending":
            self._decisions.setdefault(decision.approval_id, decision)

    @workflow.query
    def pending_approvals(self) -> list[ApprovalView]:
        return [a for a in self._approvals.values() if a.status == "pending"]

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
            # Persisting the message, searching knowledge and loading the tools are independent.
            _, (citations, retrieval_failed), tools = await asyncio.gather(
                begin, self._retrieve(req), self._offered_tools(req)
            )
            result = await self._model_answer(req, citations, tools, retrieval_failed=retrieval_failed)
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
                    agent=inp.agent,
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
        self, req: TurnRequest, citations: list[Citation], tools: list[ToolSpec], *, retrieval_failed: bool
    ) -> TurnResult:
        """The agent loop: model call → policy → (approval) → tool call → model call …"""
        inp = self._input
        records = self._turn_records.setdefault(req.turn_id, [])
        # Retrieved text the user does not own may steer the model: its side effects need a human.
        untrusted = untrusted_documents(citations, user_id=inp.user_id)
        usage = Usage()
        max_steps = inp.limits.max_tool_steps
        for step in range(max_steps + 1):
            offered = [t.name for t in tools] if step < max_steps else []  # the last step must answer
            llm = await self._call_model(
                req.turn_id, citations, retrieval_failed, step=step, tool_names=offered
            )
            if isinstance(llm, TurnError):
                return self._failed(req.turn_id, llm, records)
            usage = Usage(
                prompt_tokens=usage.prompt_tokens + llm.usage.prompt_tokens,
                completion_tokens=usage.completion_tokens + llm.usage.completion_tokens,
            )
            if llm.tool_calls and step == max_steps:
                limit = TurnError(
                    code=ErrorCode.POLICY_DENIED, message="the agent reached its tool step limit"
                )
                return self._failed(req.turn_id, limit, records)
            if not llm.tool_calls:
                return TurnResult(
                    session_id=inp.session_id,
                    turn_id=req.turn_id,
                    status="completed",
                    message=AssistantMessage(content=llm.content, citations=citations),
                    tool_calls=list(records),
                    usage=usage,
                    model=llm.model,
                    notice=llm.notice or (ErrorCode.RETRIEVAL_UNAVAILABLE if retrieval_failed else None),
                    budget_warning=self._budget_warnings.get(req.turn_id),
                )
            # One step's calls run concurrently (and so wait for their approvals concurrently).
            results = list(
                await asyncio.gather(
                    *(self._run_tool(req, call, tools, untrusted) for call in llm.tool_calls)
                )
            )
            records.extend(results)
            await self._write(
                ChatActivities.record_tool_step,
                ToolStepInput(
                    session_id=inp.session_id,
                    turn_id=req.turn_id,
                    step=step,
                    calls=llm.tool_calls,
                    results=results,
                ),
            )
            if self._deleted or req.turn_id in self._cancel_requested:
                break
        return self._failed(
            req.turn_id, TurnError(code=ErrorCode.CANCELLED, message="the turn was cancelled"), records
        )

    def _failed(self, turn_id: str, error: TurnError, records: list[ToolCallRecord]) -> TurnResult:
        return TurnResult(
            session_id=self._input.session_id,
            turn_id=turn_id,
            status="failed",
            message=AssistantMessage(content=""),
            tool_calls=list(records),
            error=error,
        )

    async def _call_model(
        self,
        turn_id: str,
        citations: list[Citation],
        retrieval_failed: bool,
        *,
        step: int,
        tool_names: list[str],
    ) -> LlmCallResult | TurnError:
        """One model step: the primary model, then the fallback model if configured.

        With token budgets each model call is bracketed by a reservation (refused: the
        turn fails with ``budget_exceeded`` before any model request) and a settlement
        with the call's real usage (zero when it failed)."""
        inp = self._input
        models: list[str | None] = [None]
        if inp.fallback_model:
            models.append(inp.fallback_model)
        error = TurnError(code=ErrorCode.UPSTREAM_UNAVAILABLE, message="the model is unavailable")
        for model in models:
            if turn_id in self._cancel_requested:
                return TurnError(code=ErrorCode.CANCELLED, message="the turn was cancelled")
            call = LlmCallInput(
                agent=inp.agent,
                session_id=inp.session_id,
                turn_id=turn_id,
                step=step,
                model_override=model,
                restream=model is not None,
                context=citations,
                retrieval_unavailable=retrieval_failed,
                tool_names=tool_names,
            )
            grant: BudgetGrant | None = None
            if workflow.patched("token-budgets"):
                grant = await self._reserve(call)
                if not grant.allowed:
                    message = grant.refusal.message if grant.refusal else "your token budget is used up"
                    return TurnError(code=ErrorCode.BUDGET_EXCEEDED, message=message)
                call = call.model_copy(
                    update={
                        "max_tokens": grant.max_output_tokens,
                        "token_allowance": grant.reserved_tokens or None,
                    }
                )
            self._active_llm = workflow.start_activity_method(
                ChatActivities.call_llm, call, **activity_presets.LLM_STREAM
            )
            try:
                result = await self._active_llm
            except ActivityError as err:
                if grant is not None:
                    await self._settle(turn_id, grant, None)
                error = _turn_error(err)
                if error.code in (ErrorCode.CANCELLED, ErrorCode.LLM_REJECTED, ErrorCode.BUDGET_EXCEEDED):
                    break
                continue
            if grant is not None:
                await self._settle(turn_id, grant, result)
            return result
        return error

    # --------------------------------------------------------------- budgets
    async def _reserve(self, call: LlmCallInput) -> BudgetGrant:
        grant: BudgetGrant = await workflow.execute_local_activity_method(
            BudgetActivities.reserve_budget,
            ReserveBudgetInput(reservation_id=str(workflow.uuid4()), user_id=self._input.user_id, call=call),
            **activity_presets.DATABASE,
        )
        if grant.warning is not None:
            self._budget_warnings[call.turn_id] = grant.warning
        return grant

    async def _settle(self, turn_id: str, grant: BudgetGrant, result: LlmCallResult | None) -> None:
        """Record the call's usage (or release the reservation when it failed). A settlement
        that cannot be written leaves the reservation to expire; the turn goes on."""
        if grant.reserved_tokens == 0:
            return  # nothing was held: no model call was made
        inp = self._input
        try:
            settled: SettleBudgetResult = await workflow.execute_local_activity_method(
                BudgetActivities.settle_budget,
                SettleBudgetInput(
                    reservation_id=grant.reservation_id,
                    user_id=inp.user_id,
                    session_id=inp.session_id,
                    turn_id=turn_id,
                    succeeded=result is not None and result.configured,
                    model=result.model if result else None,
                    prompt_tokens=result.usage.prompt_tokens if result else 0,
                    completion_tokens=result.usage.completion_tokens if result else 0,
                ),
                **activity_presets.DATABASE,
            )
        except ActivityError:
            workflow.logger.warning("budget settlement failed; the reservation will expire")
            return
        if settled.warning is not None:
            self._budget_warnings[turn_id] = settled.warning
        elif result is not None:
            self._budget_warnings.pop(turn_id, None)  # usage is below the ratio after all

    # ---------------------------------------------------------------- tools
    async def _offered_tools(self, req: TurnRequest) -> list[ToolSpec]:
        if not workflow.patched("tool-loop"):
            return []
        # A short Postgres read: a local activity, no task-queue round trip.
        loaded: LoadToolsResult = await workflow.execute_local_activity_method(
            ToolActivities.load_tools,
            LoadToolsInput(agent=self._input.agent, user_id=self._input.user_id, groups=req.groups),
            **activity_presets.DATABASE,
        )
        return loaded.tools

    async def _run_tool(
        self,
        req: TurnRequest,
        call: ToolCallRequest,
        tools: list[ToolSpec],
        untrusted: list[ContextDocument],
    ) -> ToolCallRecord:
        inp = self._input
        key = f"{workflow.info().workflow_id}:{req.turn_id}:{call.call_id}"
        record = ToolCallRecord(
            call_id=call.call_id, name=call.name, arguments=call.arguments, status="refused"
        )
        principal = Principal(user_id=inp.user_id, groups=tuple(req.groups))
        decision = decide(call, offered=tools, principal=principal, untrusted_context=untrusted)
        if not decision.allowed:
            await self._write(
                ToolActivities.record_refusal,
                RefusalInput(
                    session_id=inp.session_id,
                    turn_id=req.turn_id,
                    user_id=inp.user_id,
                    call=call,
                    idempotency_key=key,
                    reason=decision.reason,
                ),
            )
            return record.model_copy(update={"result": f"Refused by Keel's tool policy: {decision.reason}."})
        spec = next(t for t in tools if t.name == call.name)
        if decision.needs_approval:
            approval = await self._await_approval(req, call, spec, decision, untrusted)
            record = record.model_copy(update={"approval_id": approval.id})
            if approval.status != "approved":
                outcome = "denied by the approver" if approval.status == "denied" else "not approved in time"
                return record.model_copy(
                    update={
                        "status": approval.status,
                        "result": f"This tool call was {outcome}; it did not run.",
                    }
                )
        try:
            result = await workflow.execute_activity_method(
                ToolActivities.call_tool,
                CallToolInput(
                    session_id=inp.session_id,
                    turn_id=req.turn_id,
                    user_id=inp.user_id,
                    spec=spec,
                    call=call,
                    idempotency_key=key,
                    context_documents=untrusted,
                ),
                **activity_presets.tool_call(timeout_s=spec.timeout_s, max_retries=spec.max_retries),
            )
        except ActivityError as err:
            message = (
                err.cause.message if isinstance(err.cause, ApplicationError) else "the tool did not answer"
            )
            return record.model_copy(
                update={"status": "failed", "result": f"The tool call failed: {message}."}
            )
        return record.model_copy(
            update={"status": "completed" if result.ok else "failed", "result": result.content}
        )

    async def _await_approval(
        self,
        req: TurnRequest,
        call: ToolCallRequest,
        spec: ToolSpec,
        decision: ToolDecision,
        untrusted: list[ContextDocument],
    ) -> ApprovalView:
        inp = self._input
        approval = ApprovalView(
            id="apr-" + workflow.uuid4().hex[:24],
            session_id=inp.session_id,
            turn_id=req.turn_id,
            tool=call.name,
            arguments=call.arguments,  # the redacted view (call_llm masked secrets)
            approver_group=spec.approver_group,
            context_documents=untrusted,
            reason=decision.reason or None,
        )
        self._approvals[approval.id] = approval
        await self._write(
            ToolActivities.record_approval,
            RecordApprovalInput(
                approval=approval,
                requester=inp.user_id,
                timeout_s=inp.limits.approval_timeout_s,
                requester_api_key_id=req.api_key_id,
            ),
        )
        self._announced.add(approval.id)  # stored: an approver can now find and decide it
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: approval.id in self._decisions or self._deleted,
                timeout=timedelta(seconds=inp.limits.approval_timeout_s),
            )
        decided = self._decisions.get(approval.id)
        status: ApprovalStatus = (
            "expired" if decided is None else ("approved" if decided.approved else "denied")
        )
        approval.status = status
        await self._write(
            ToolActivities.resolve_approval,
            ResolveApprovalInput(
                approval_id=approval.id,
                status=status,
                decided_by=decided.decided_by if decided else None,
                comment=decided.comment if decided else None,
                arguments_ref=call.arguments_ref if status != "approved" else None,
            ),
        )
        return approval

    def _all_announced(self, turn_id: str) -> bool:
        """Some approval of this turn waits, and every one it created is stored."""
        pending = [a for a in self._approvals.values() if a.turn_id == turn_id and a.status == "pending"]
        return bool(pending) and all(a.id in self._announced for a in pending)

    def _awaiting(self, turn_id: str) -> list[ApprovalView]:
        return [
            a
            for a in self._approvals.values()
            if a.turn_id == turn_id and a.status == "pending" and a.id in self._announced
        ]

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
