"""One chat turn's steps, in order (a helper of :class:`workflows.chat_session.ChatSessionWorkflow`).

``begin_turn`` (persist the user message) with ``retrieve`` (knowledge search) and
``load_tools``, concurrently → the agent loop: ``reserve_budget`` → ``call_llm``
(stream the answer into Redis) → ``settle_budget`` → the tool policy → (an
approval, :mod:`workflows.chat_approvals`) → ``call_tool`` → the next model step
… → ``complete_turn`` (persist the answer, publish ``turn.completed``).
All I/O is in :mod:`activities`; short Postgres writes run as local activities.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from workflows import activity_presets
from workflows.chat_approvals import Approvals

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorCode
    from core.models.budget import BudgetWarning
    from core.models.chat import (
        AssistantMessage,
        BeginTurnInput,
        ChatSessionInput,
        Citation,
        CompleteTurnInput,
        LlmCallInput,
        LlmCallResult,
        RetrieveInput,
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
        CallToolInput,
        ContextDocument,
        LoadToolsInput,
        LoadToolsResult,
        RefusalInput,
        ToolCallRecord,
        ToolCallRequest,
        ToolSpec,
        ToolStepInput,
    )
    from core.policy.tools import decide, untrusted_documents
    from workflows.activity_defs import BudgetActivities, ChatActivities, ToolActivities

#: Knowledge search reads the start of the message only.
_QUERY_CHARS = 2000
_CANCELLED = TurnError(code=ErrorCode.CANCELLED, message="the turn was cancelled")


class ChatTurn:
    """Runs one turn at a time; the session workflow holds one and serialises turns."""

    def __init__(self, inp: ChatSessionInput, approvals: Approvals) -> None:
        self._input = inp
        self._approvals = approvals
        self.active_turn_id: str | None = None
        self._active_llm: workflow.ActivityHandle[LlmCallResult] | None = None
        self._cancelled: set[str] = set()
        self._deleted = False
        #: Tool calls so far, per turn (an ``awaiting_approval`` answer shows them).
        self.records: dict[str, list[ToolCallRecord]] = {}
        self._budget_warnings: dict[str, BudgetWarning] = {}

    # ----------------------------------------------------- from handlers
    def cancel(self, turn_id: str) -> None:
        """Stop the turn: its model call now, before its next step otherwise."""
        self._cancelled.add(turn_id)
        if turn_id == self.active_turn_id and self._active_llm is not None:
            self._active_llm.cancel()

    def stop_all(self) -> None:
        """The session is being deleted: the running turn stops."""
        self._deleted = True
        if self._active_llm is not None:
            self._active_llm.cancel()

    def _stopped(self, turn_id: str) -> bool:
        return self._deleted or turn_id in self._cancelled

    def forget(self, turn_id: str) -> None:
        self.records.pop(turn_id, None)
        self._budget_warnings.pop(turn_id, None)

    # -------------------------------------------------------------- turn
    async def run(self, req: TurnRequest) -> TurnResult:
        inp = self._input
        self.active_turn_id = req.turn_id
        try:
            begin = workflow.execute_local_activity_method(
                ChatActivities.begin_turn,
                BeginTurnInput(
                    session_id=inp.session_id,
                    user_id=inp.user_id,
                    turn_id=req.turn_id,
                    message=req.message,
                    agent=inp.agent,
                ),
                **activity_presets.DATABASE,
            )
            # Persisting the message, searching knowledge and loading the tools are independent.
            _, (citations, retrieval_failed), tools = await asyncio.gather(
                begin, self._retrieve(req), self._offered_tools(req)
            )
            result = await self._model_answer(req, citations, tools, retrieval_failed=retrieval_failed)
            await workflow.execute_local_activity_method(
                ChatActivities.complete_turn,
                CompleteTurnInput(
                    session_id=inp.session_id, user_id=inp.user_id, turn_id=req.turn_id, result=result
                ),
                **activity_presets.DATABASE,
            )
        finally:
            self.active_turn_id = None
            self._active_llm = None
        return result

    async def _retrieve(self, req: TurnRequest) -> tuple[list[Citation], bool]:
        """Knowledge search for this turn; (citations, whether the search failed)."""
        if not req.search_knowledge:
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
                    audience=req.audience,
                ),
                task_queue=inp.queues.retrieval,
                **activity_presets.VECTOR,
            )
        except ActivityError:
            return [], True
        return found.citations, False

    async def _offered_tools(self, req: TurnRequest) -> list[ToolSpec]:
        # A short Postgres read: a local activity, no task-queue round trip.
        loaded: LoadToolsResult = await workflow.execute_local_activity_method(
            ToolActivities.load_tools,
            LoadToolsInput(agent=self._input.agent, user_id=self._input.user_id, groups=req.groups),
            **activity_presets.DATABASE,
        )
        return loaded.tools

    async def _model_answer(
        self, req: TurnRequest, citations: list[Citation], tools: list[ToolSpec], *, retrieval_failed: bool
    ) -> TurnResult:
        """The agent loop: model call → policy → (approval) → tool call → model call …"""
        inp = self._input
        records = self.records.setdefault(req.turn_id, [])
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
            await workflow.execute_local_activity_method(
                ChatActivities.record_tool_step,
                ToolStepInput(
                    session_id=inp.session_id,
                    turn_id=req.turn_id,
                    step=step,
                    calls=llm.tool_calls,
                    results=results,
                ),
                **activity_presets.DATABASE,
            )
            if self._stopped(req.turn_id):
                break
        return self._failed(req.turn_id, _CANCELLED, records)

    def _failed(self, turn_id: str, error: TurnError, records: list[ToolCallRecord]) -> TurnResult:
        return TurnResult(
            session_id=self._input.session_id,
            turn_id=turn_id,
            status="cancelled" if error.code == ErrorCode.CANCELLED else "failed",
            message=AssistantMessage(content=""),
            tool_calls=list(records),
            error=error,
        )

    # ------------------------------------------------------- model step
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

        Each model call is bracketed by a budget reservation (refused: the turn fails
        with ``budget_exceeded`` before any model request) and a settlement with the
        call's real usage (zero when it failed)."""
        inp = self._input
        models: list[str | None] = [None]
        if inp.fallback_model:
            models.append(inp.fallback_model)
        error = TurnError(code=ErrorCode.UPSTREAM_UNAVAILABLE, message="the model is unavailable")
        for model in models:
            if self._stopped(turn_id):
                return _CANCELLED
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
            grant = await self._reserve(call)
            if not grant.allowed:
                message = grant.refusal.message if grant.refusal else "your token budget is used up"
                return TurnError(code=ErrorCode.BUDGET_EXCEEDED, message=message)
            call = call.model_copy(
                update={
                    "max_tokens": grant.max_output_tokens,
                    "token_allowance": grant.reserved_tokens or None,
                    "reservation_id": grant.reservation_id,
                }
            )
            self._active_llm = workflow.start_activity_method(
                ChatActivities.call_llm, call, **activity_presets.LLM_STREAM
            )
            try:
                result = await self._active_llm
            except ActivityError as err:
                await self._settle(turn_id, grant, None)
                error = _turn_error(err)
                if error.code in (ErrorCode.CANCELLED, ErrorCode.LLM_REJECTED, ErrorCode.BUDGET_EXCEEDED):
                    break
                continue
            await self._settle(turn_id, grant, result)
            return result
        return error

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

    # -------------------------------------------------------------- tools
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
            await workflow.execute_local_activity_method(
                ToolActivities.record_refusal,
                RefusalInput(
                    session_id=inp.session_id,
                    turn_id=req.turn_id,
                    user_id=inp.user_id,
                    call=call,
                    idempotency_key=key,
                    reason=decision.reason,
                ),
                **activity_presets.DATABASE,
            )
            return record.model_copy(update={"result": f"Refused by Keel's tool policy: {decision.reason}."})
        spec = next(t for t in tools if t.name == call.name)
        if decision.needs_approval:
            approval = await self._approvals.wait_for_decision(
                req, call, spec, decision, untrusted, stopped=lambda: self._stopped(req.turn_id)
            )
            record = record.model_copy(update={"approval_id": approval.id})
            if approval.status != "approved":
                outcome = "denied by the approver" if approval.status == "denied" else "not approved in time"
                return record.model_copy(
                    update={
                        "status": approval.status,
                        "result": f"This tool call was {outcome}; it did not run.",
                    }
                )
        if self._stopped(req.turn_id):
            return record.model_copy(update={"status": "failed", "result": "The turn was cancelled."})
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
                task_queue=inp.queues.tools,
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


def _turn_error(err: ActivityError) -> TurnError:
    cause = err.cause
    if isinstance(cause, CancelledError):
        return _CANCELLED
    if isinstance(cause, ActivityTimeoutError):
        return TurnError(code=ErrorCode.TIMEOUT, message="the model did not answer in time")
    if isinstance(cause, ApplicationError) and cause.type:
        return TurnError(code=cause.type, message=cause.message)
    return TurnError(code=ErrorCode.UPSTREAM_UNAVAILABLE, message="the model is unavailable")
