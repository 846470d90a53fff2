"""ChatSessionWorkflow semantics against a real dev server (and the time-skipping server for timers)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from core.models.chat import CancelTurn, ChatSessionInput, SessionLimits, TurnRequest
from core.names import chat_workflow_id
from infra.knowledge import open_knowledge
from infra.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from workers.chat_worker import ChatWorkerActivities, chat_activities, running_chat_workers
from workflows.chat_session import ChatSessionWorkflow


@pytest.fixture
async def worker_activities(settings: Settings) -> AsyncIterator[ChatWorkerActivities]:
    async with open_knowledge(settings) as knowledge, chat_activities(settings, knowledge) as activities:
        yield activities


def _start(settings: Settings, session_id: str, user_id: str, **limits: int) -> WithStartWorkflowOperation:  # type: ignore[type-arg]
    return WithStartWorkflowOperation(
        ChatSessionWorkflow.run,
        ChatSessionInput(
            session_id=session_id,
            user_id=user_id,
            limits=SessionLimits(**limits),
            queues=settings.activity_queues,
        ),
        id=chat_workflow_id(session_id),
        task_queue=settings.chat_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


def _request(
    user_id: str, message: str = "hello", *, age_s: float = 0, turn_id: str | None = None
) -> TurnRequest:
    return TurnRequest(
        turn_id=turn_id or uuid.uuid4().hex,
        user_id=user_id,
        message=message,
        submitted_at=datetime.now(UTC) - timedelta(seconds=age_s),
    )


async def _rejection(
    client: Client, settings: Settings, session_id: str, req: TurnRequest, **limits: int
) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await client.execute_update_with_start_workflow(
            ChatSessionWorkflow.send_message,
            req,
            start_workflow_operation=_start(settings, session_id, "u1", **limits),
        )
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return str(cause.type)


async def test_validator_rejects_bad_updates_before_history(
    temporal_client: Client, settings: Settings, worker_activities: ChatWorkerActivities, llm: FakeOpenAI
) -> None:
    session_id = uuid.uuid4().hex
    async with running_chat_workers(temporal_client, settings, worker_activities):
        ok = await temporal_client.execute_update_with_start_workflow(
            ChatSessionWorkflow.send_message,
            _request("u1", turn_id="turn-1"),
            start_workflow_operation=_start(settings, session_id, "u1", max_message_chars=100),
        )
        assert ok.status == "completed"
        assert (
            await _rejection(temporal_client, settings, session_id, _request("u1", " \n\t"))
            == "empty_message"
        )
        assert (
            await _rejection(temporal_client, settings, session_id, _request("u1", "x" * 101))
            == "message_too_large"
        )
        assert (
            await _rejection(temporal_client, settings, session_id, _request("u1", age_s=3600))
            == "stale_request"
        )
        assert (
            await _rejection(temporal_client, settings, session_id, _request("intruder"))
            == "session_not_found"
        )
        # The same turn id under a new update id is a replay of a finished turn.
        assert (
            await _rejection(temporal_client, settings, session_id, _request("u1", turn_id="turn-1"))
            == "stale_request"
        )

        handle = temporal_client.get_workflow_handle_for(
            ChatSessionWorkflow.run, chat_workflow_id(session_id)
        )
        state = await handle.query(ChatSessionWorkflow.state)
        assert state.turn_count == 1
        # Rejected updates never entered history: exactly one accepted update.
        history = await handle.fetch_history()
        accepted = [
            e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert len(accepted) == 1
    assert llm.request_count == 1


async def test_same_update_id_returns_the_same_turn(
    temporal_client: Client, settings: Settings, worker_activities: ChatWorkerActivities, llm: FakeOpenAI
) -> None:
    session_id = uuid.uuid4().hex
    req = _request("u1", "once only")
    async with running_chat_workers(temporal_client, settings, worker_activities):
        results = await asyncio.gather(
            *(
                temporal_client.execute_update_with_start_workflow(
                    ChatSessionWorkflow.send_message,
                    req,
                    start_workflow_operation=_start(settings, session_id, "u1"),
                    id=req.turn_id,
                )
                for _ in range(3)
            )
        )
    assert {r.turn_id for r in results} == {req.turn_id}
    assert len({r.message.content for r in results}) == 1
    assert llm.request_count == 1


async def test_turns_of_one_session_run_in_order(
    temporal_client: Client, settings: Settings, worker_activities: ChatWorkerActivities, llm: FakeOpenAI
) -> None:
    session_id = uuid.uuid4().hex
    llm.enqueue(Reply("first", ttft_s=0.3), Reply("second"), Reply("third"))
    async with running_chat_workers(temporal_client, settings, worker_activities):
        start = _start(settings, session_id, "u1")
        h1 = await temporal_client.start_update_with_start_workflow(
            ChatSessionWorkflow.send_message,
            _request("u1", "1"),
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        handle = temporal_client.get_workflow_handle_for(
            ChatSessionWorkflow.run, chat_workflow_id(session_id)
        )
        h2 = await handle.start_update(
            ChatSessionWorkflow.send_message, _request("u1", "2"), wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        h3 = await handle.start_update(
            ChatSessionWorkflow.send_message, _request("u1", "3"), wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        results = [await h.result() for h in (h1, h2, h3)]
    assert [r.message.content for r in results] == ["first", "second", "third"]
    users_seen = [[m["content"] for m in r["messages"] if m["role"] == "user"] for r in llm.requests]
    assert users_seen == [["1"], ["1", "2"], ["1", "2", "3"]]


async def test_cancel_signal_stops_the_model_call(
    temporal_client: Client, settings: Settings, worker_activities: ChatWorkerActivities, llm: FakeOpenAI
) -> None:
    session_id = uuid.uuid4().hex
    llm.hold()
    req = _request("u1", "long answer please")
    async with running_chat_workers(temporal_client, settings, worker_activities):
        update = await temporal_client.start_update_with_start_workflow(
            ChatSessionWorkflow.send_message,
            req,
            start_workflow_operation=_start(settings, session_id, "u1"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await asyncio.to_thread(llm.wait_for_request, 10)
        handle = temporal_client.get_workflow_handle_for(
            ChatSessionWorkflow.run, chat_workflow_id(session_id)
        )
        await handle.signal(ChatSessionWorkflow.cancel_turn, CancelTurn(turn_id=req.turn_id))
        result = await asyncio.wait_for(update.result(), timeout=30)
        llm.release()
    assert result.status == "cancelled"
    assert result.error is not None and result.error.code == "cancelled"


async def test_session_ends_after_idle_timeout_and_restarts_on_next_message(
    temporal_client: Client, settings: Settings, worker_activities: ChatWorkerActivities, llm: FakeOpenAI
) -> None:
    session_id = uuid.uuid4().hex
    async with running_chat_workers(temporal_client, settings, worker_activities):
        first = await temporal_client.execute_update_with_start_workflow(
            ChatSessionWorkflow.send_message,
            _request("u1", "one"),
            start_workflow_operation=_start(settings, session_id, "u1", idle_timeout_s=1),
        )
        handle = temporal_client.get_workflow_handle_for(
            ChatSessionWorkflow.run, chat_workflow_id(session_id)
        )
        outcome = await asyncio.wait_for(handle.result(), timeout=30)
        assert outcome.reason == "idle" and outcome.turn_count == 1
        second = await temporal_client.execute_update_with_start_workflow(
            ChatSessionWorkflow.send_message,
            _request("u1", "two"),
            start_workflow_operation=_start(settings, session_id, "u1", idle_timeout_s=1),
        )
    assert first.status == second.status == "completed"
    # The new run rendered the prompt from the stored transcript.
    assert [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "user"] == ["one", "two"]


async def test_long_idle_timeout_with_time_skipping(
    settings: Settings, worker_activities: ChatWorkerActivities
) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        async with running_chat_workers(env.client, settings, worker_activities):
            handle = await env.client.start_workflow(
                ChatSessionWorkflow.run,
                ChatSessionInput(
                    session_id="ts",
                    user_id="u1",
                    limits=SessionLimits(idle_timeout_s=7 * 24 * 3600),
                    queues=settings.activity_queues,
                ),
                id=chat_workflow_id(f"ts-{uuid.uuid4().hex}"),
                task_queue=settings.chat_task_queue,
            )
            outcome = await handle.result()
    finally:
        await env.shutdown()
    assert outcome.reason == "idle"
    assert outcome.turn_count == 0
