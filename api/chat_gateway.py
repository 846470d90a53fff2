"""How a front door (REST, SSE, Slack) talks to ChatSessionWorkflow.

A message is the ``send_message`` Update of the workflow ``chat-{session_id}``. A
follow-up in a session that is known to exist goes to the running workflow as a
plain Update (no start path); when that workflow is no longer running (its idle
timeout ended it), and for a new session, it is an update-with-start: the workflow
is started and the Update delivered in the same call. The update id is the turn
id, so a retried call never runs a turn twice. An approval decision is the
``decide_approval`` Update (it answers the decided approval); cancelling a turn
is the ``cancel_turn`` Signal.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import structlog
from temporalio.api.errordetails.v1 import MultiOperationExecutionFailure
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError
from core.errors import ErrorCode, public_error
from core.models.agents import AgentDefinition
from core.models.chat import (
    Audience,
    CancelTurn,
    ChatSessionInput,
    DeleteSessionRequest,
    SessionLimits,
    TurnRequest,
    TurnResult,
)
from core.models.principal import Principal
from core.models.tools import ApprovalDecision, ApprovalView
from core.names import chat_workflow_id
from infra.settings import Settings
from infra.tracing import bind_turn
from workflows import search_attributes
from workflows.chat_session import ChatSessionWorkflow

log = structlog.get_logger(__name__)

_START_ATTEMPTS = 3


def new_session_id() -> str:
    return uuid.uuid4().hex


def new_turn_id() -> str:
    return uuid.uuid4().hex


def _start_operation(
    settings: Settings, principal: Principal, session_id: str, agent: AgentDefinition | None = None
) -> WithStartWorkflowOperation[ChatSessionWorkflow, object]:
    return WithStartWorkflowOperation(
        ChatSessionWorkflow.run,
        ChatSessionInput(
            session_id=session_id,
            user_id=principal.user_id,
            agent=agent.name if agent else settings.default_agent,
            fallback_model=settings.llm_fallback_model,
            limits=SessionLimits(
                idle_timeout_s=settings.chat_idle_timeout_s,
                max_message_chars=settings.chat_max_message_chars,
                max_request_age_s=settings.chat_max_request_age_s,
                max_queued_turns=settings.chat_max_queued_turns,
                approval_timeout_s=settings.tool_approval_timeout_s,
                max_tool_steps=agent.step_limit if agent else settings.tool_max_steps,
            ),
            queues=settings.activity_queues,
        ),
        id=chat_workflow_id(session_id),
        task_queue=settings.chat_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=search_attributes.for_chat(user_id=principal.user_id, session_id=session_id),
        static_summary=f"chat session of {principal.user_id}",
    )


def _update_failure(err: WorkflowUpdateFailedError) -> ApiError:
    """Keel's own refusals pass through with their message; anything else (an
    exception class name as the type, a driver's message) becomes ``internal_error``."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type:
        code, message = public_error(cause.type, cause.message)
        if code != ErrorCode.INTERNAL:
            return ApiError(code, message)
    return ApiError(ErrorCode.INTERNAL, "the turn could not be accepted", status=500)


def _is_closing_race(err: RPCError) -> bool:
    # The run closed (idle timeout) between our start check and the update:
    # asking again starts a fresh run.
    return err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


_NOT_READY = "WorkflowNotReadyFailure"


def workflow_not_ready(err: RPCError) -> bool:
    """The session's workflow task failed (its worker died mid-task) and waits for a worker
    to retry it: Temporal refuses Updates meanwhile. Not an outage of Temporal: the retry
    comes within the workflow task timeout, or as soon as a worker polls again."""
    if err.status != RPCStatusCode.FAILED_PRECONDITION:
        return False
    for detail in err.grpc_status.details:
        if detail.type_url.endswith(_NOT_READY):
            return True
        if detail.type_url.endswith("MultiOperationExecutionFailure"):
            failure = MultiOperationExecutionFailure()
            detail.Unpack(failure)
            if any(d.type_url.endswith(_NOT_READY) for st in failure.statuses for d in st.details):
                return True
    return False


#: How long a message waits for a session whose workflow task is being retried (a worker
#: died); then ``503 upstream_unavailable``. Longer than the 10 s workflow task timeout.
_NOT_READY_WAIT_S = 30.0


async def start_turn(
    client: Client,
    settings: Settings,
    *,
    principal: Principal,
    session_id: str,
    message: str,
    turn_id: str,
    knowledge_base_ids: list[str] | None = None,
    search_knowledge: bool = True,
    agent: AgentDefinition | None = None,
    existing: bool = False,
    wait_for_stage: WorkflowUpdateStage = WorkflowUpdateStage.ACCEPTED,
    audience: Audience | None = None,
) -> WorkflowUpdateHandle[TurnResult]:
    """Deliver a user message; returns once the workflow has accepted it (or, with
    ``wait_for_stage=COMPLETED``, once the turn has finished: one call, no poll).

    ``existing``: the session is known (a follow-up), so its workflow is most likely
    running and gets a plain Update; only if it is not is the start path taken.

    ``audience``: everyone who will see the answer (a Slack channel or thread): knowledge
    search uses only what the asker and every member may read (docs/knowledge.md,
    "Audience rule"); None, the asker's own permissions. Never from a public request."""
    bind_turn(user_id=principal.user_id, session_id=session_id, turn_id=turn_id)
    request = TurnRequest(
        turn_id=turn_id,
        user_id=principal.user_id,
        message=message,
        submitted_at=datetime.now(UTC),
        knowledge_base_ids=knowledge_base_ids or [],
        groups=list(principal.groups),
        search_knowledge=search_knowledge,
        api_key_id=principal.api_key_id,
        audience=audience,
    )
    deadline = asyncio.get_running_loop().time() + _NOT_READY_WAIT_S
    while True:
        try:
            return await _deliver(
                client, settings, principal, session_id, request, agent, existing, wait_for_stage
            )
        except RPCError as err:
            if not workflow_not_ready(err) or asyncio.get_running_loop().time() > deadline:
                raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, "the workflow service is unavailable") from err
            log.info("chat.workflow_not_ready", session_id=session_id, turn_id=turn_id)
            await asyncio.sleep(0.5)


async def _deliver(
    client: Client,
    settings: Settings,
    principal: Principal,
    session_id: str,
    request: TurnRequest,
    agent: AgentDefinition | None,
    existing: bool,
    wait_for_stage: WorkflowUpdateStage,
) -> WorkflowUpdateHandle[TurnResult]:
    """One try at delivering ``request``; a workflow that is not ready raises its RPCError."""
    if existing:
        handle = await _update_running(client, session_id, request, wait_for_stage)
        if handle is not None:
            return handle
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            return await client.start_update_with_start_workflow(
                ChatSessionWorkflow.send_message,
                request,
                start_workflow_operation=_start_operation(settings, principal, session_id, agent),
                wait_for_stage=wait_for_stage,
                id=request.turn_id,
            )
        except WorkflowUpdateFailedError as err:
            raise _update_failure(err) from err
        except RPCError as err:
            if workflow_not_ready(err):
                raise
            if attempt == _START_ATTEMPTS or not _is_closing_race(err):
                raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, "the workflow service is unavailable") from err
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


async def _update_running(
    client: Client, session_id: str, request: TurnRequest, wait_for_stage: WorkflowUpdateStage
) -> WorkflowUpdateHandle[TurnResult] | None:
    """The Update on the session's running workflow; None when no run is open (start one)."""
    workflow = client.get_workflow_handle_for(ChatSessionWorkflow.run, chat_workflow_id(session_id))
    try:
        return await workflow.start_update(
            ChatSessionWorkflow.send_message, request, wait_for_stage=wait_for_stage, id=request.turn_id
        )
    except WorkflowUpdateFailedError as err:
        raise _update_failure(err) from err
    except RPCError as err:
        if workflow_not_ready(err):
            raise
        if _is_closing_race(err):
            return None
        raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, "the workflow service is unavailable") from err


def _turn_timeout() -> ApiError:
    return ApiError(
        ErrorCode.TIMEOUT,
        "the turn did not finish in time; it goes on, and its result will appear in the session",
    )


async def turn_result(handle: WorkflowUpdateHandle[TurnResult], *, timeout_s: float) -> TurnResult:
    try:
        return await asyncio.wait_for(handle.result(), timeout=timeout_s)
    except WorkflowUpdateFailedError as err:
        raise _update_failure(err) from err
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        # The SDK's poll for the outcome gave up (the wait ran past its RPC deadline): still
        # a turn that did not finish in time, not an internal error.
        raise _turn_timeout() from err


async def run_follow_up(
    client: Client,
    settings: Settings,
    *,
    principal: Principal,
    session_id: str,
    message: str,
    turn_id: str,
    knowledge_base_ids: list[str] | None = None,
    search_knowledge: bool = True,
    agent: AgentDefinition | None = None,
    timeout_s: float,
    audience: Audience | None = None,
) -> TurnResult:
    """A follow-up turn in an existing session, delivered and answered in one call."""

    async def run() -> TurnResult:
        handle = await start_turn(
            client,
            settings,
            principal=principal,
            session_id=session_id,
            message=message,
            turn_id=turn_id,
            knowledge_base_ids=knowledge_base_ids,
            search_knowledge=search_knowledge,
            agent=agent,
            existing=True,
            wait_for_stage=WorkflowUpdateStage.COMPLETED,
            audience=audience,
        )
        return await handle.result()  # the outcome came with the call: no poll

    try:
        return await asyncio.wait_for(run(), timeout=timeout_s)
    except WorkflowUpdateFailedError as err:
        raise _update_failure(err) from err
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        raise _turn_timeout() from err


async def delete_session(
    client: Client, settings: Settings, *, principal: Principal, session_id: str
) -> None:
    try:
        await client.execute_update_with_start_workflow(
            ChatSessionWorkflow.delete,
            DeleteSessionRequest(user_id=principal.user_id),
            start_workflow_operation=_start_operation(settings, principal, session_id),
        )
    except WorkflowUpdateFailedError as err:
        raise _update_failure(err) from err


async def decide_approval(client: Client, *, session_id: str, decision: ApprovalDecision) -> ApprovalView:
    """Deliver an authorised decision; returns the approval stored ``approved`` or ``denied``.
    Unknown or already decided approvals are refused by the Update's validator (409/404)."""
    handle = client.get_workflow_handle_for(ChatSessionWorkflow.run, chat_workflow_id(session_id))
    try:
        return await handle.execute_update(ChatSessionWorkflow.decide_approval, decision)
    except WorkflowUpdateFailedError as err:
        raise _update_failure(err) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # the session ended: nothing waits for a decision
            raise ApiError(ErrorCode.STALE_REQUEST, "this approval can no longer be decided") from err
        raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, "the workflow service is unavailable") from err


async def cancel_turn(client: Client, *, session_id: str, turn_id: str) -> bool:
    """Ask the session to stop a turn; False when the session's workflow is no longer running."""
    handle = client.get_workflow_handle_for(ChatSessionWorkflow.run, chat_workflow_id(session_id))
    try:
        await handle.signal(ChatSessionWorkflow.cancel_turn, CancelTurn(turn_id=turn_id))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, "the workflow service is unavailable") from err
    return True
