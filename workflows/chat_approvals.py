"""Approvals of one chat session: the tool calls that wait for a human.

Not a workflow: a helper :class:`workflows.chat_session.ChatSessionWorkflow` owns.
A call that needs approval is stored (``record_approval``), then waits for the
``decide_approval`` Update, the session's deletion or cancellation, or the
approval timeout (``expired``); the outcome is stored (``resolve_approval``).
The Update's validator refuses unknown and already decided approvals before they
enter history, and the Update answers the decided approval.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorCode
    from core.models.chat import ChatSessionInput, TurnRequest
    from core.models.tools import (
        ApprovalDecision,
        ApprovalStatus,
        ApprovalView,
        ContextDocument,
        RecordApprovalInput,
        ResolveApprovalInput,
        ToolCallRequest,
        ToolDecision,
        ToolSpec,
    )
    from workflows.activity_defs import ToolActivities


class Approvals:
    def __init__(self, inp: ChatSessionInput) -> None:
        self._input = inp
        self._views: dict[str, ApprovalView] = {}
        self._decisions: dict[str, ApprovalDecision] = {}
        #: Stored in Postgres: an approver can find and decide it.
        self._announced: set[str] = set()
        #: Decided (or expired) and the outcome stored.
        self._resolved: set[str] = set()

    # ---------------------------------------------------------- the Update
    def validate(self, decision: ApprovalDecision) -> None:
        """Refuse a decision before it enters history: unknown, or already decided."""
        approval = self._views.get(decision.approval_id)
        if approval is None or decision.approval_id not in self._announced:
            raise ApplicationError("approval not found", type=ErrorCode.NOT_FOUND)
        if approval.status != "pending" or decision.approval_id in self._decisions:
            status = approval.status if approval.status != "pending" else "decided"
            raise ApplicationError(f"this approval is already {status}", type=ErrorCode.STALE_REQUEST)

    async def decide(self, decision: ApprovalDecision) -> ApprovalView:
        """Record an authorised approver's decision; returns the approval once it is stored decided."""
        # Two decisions accepted in the same workflow task both passed the validator: the first wins.
        self.validate(decision)
        self._decisions[decision.approval_id] = decision
        await workflow.wait_condition(lambda: decision.approval_id in self._resolved)
        return self._views[decision.approval_id].model_copy()

    def pending(self) -> list[ApprovalView]:
        return [a for a in self._views.values() if a.status == "pending"]

    # -------------------------------------------------------- in the turn
    async def wait_for_decision(
        self,
        req: TurnRequest,
        call: ToolCallRequest,
        spec: ToolSpec,
        decision: ToolDecision,
        untrusted: list[ContextDocument],
        *,
        stopped: Callable[[], bool],
    ) -> ApprovalView:
        """Store the approval, wait for its decision (or ``stopped()``, or the timeout), store the outcome."""
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
        self._views[approval.id] = approval
        await workflow.execute_local_activity_method(
            ToolActivities.record_approval,
            RecordApprovalInput(
                approval=approval,
                requester=inp.user_id,
                timeout_s=inp.limits.approval_timeout_s,
                requester_api_key_id=req.api_key_id,
            ),
            **activity_presets.DATABASE,
        )
        self._announced.add(approval.id)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: approval.id in self._decisions or stopped(),
                timeout=timedelta(seconds=inp.limits.approval_timeout_s),
            )
        decided = self._decisions.get(approval.id)
        status: ApprovalStatus = (
            "expired" if decided is None else ("approved" if decided.approved else "denied")
        )
        approval.status = status
        await workflow.execute_local_activity_method(
            ToolActivities.resolve_approval,
            ResolveApprovalInput(
                approval_id=approval.id,
                status=status,
                decided_by=decided.decided_by if decided else None,
                decided_by_name=decided.decided_by_name if decided else None,
                comment=decided.comment if decided else None,
                arguments_ref=call.arguments_ref if status != "approved" else None,
            ),
            **activity_presets.DATABASE,
        )
        self._resolved.add(approval.id)
        return approval

    def all_announced(self, turn_id: str) -> bool:
        """Some approval of this turn waits, and every one it created is stored."""
        pending = [a for a in self.pending() if a.turn_id == turn_id]
        return bool(pending) and all(a.id in self._announced for a in pending)

    def awaiting(self, turn_id: str) -> list[ApprovalView]:
        return [a for a in self.pending() if a.turn_id == turn_id and a.id in self._announced]
