"""A long conversation continues-as-new when Temporal suggests it, carrying its summary."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.models.chat import ChatSessionInput, TurnRequest
from core.names import chat_workflow_id
from infra.knowledge import open_knowledge
from infra.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from workers.chat_worker import chat_activities, running_chat_workers
from workflows.chat_session import ChatSessionWorkflow

pytestmark = pytest.mark.slow


async def test_continue_as_new_keeps_the_conversation(settings: Settings, llm: FakeOpenAI) -> None:
    # A server that suggests continue-as-new after a few dozen events (the default is thousands).
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
    )
    session_id = uuid.uuid4().hex
    wf_id = chat_workflow_id(session_id)
    try:
        async with (
            open_knowledge(settings) as knowledge,
            chat_activities(settings, knowledge) as activities,
            running_chat_workers(env.client, settings, activities),
        ):
            results = []
            for n in range(6):
                start = WithStartWorkflowOperation(
                    ChatSessionWorkflow.run,
                    ChatSessionInput(session_id=session_id, user_id="u1", queues=settings.activity_queues),
                    id=wf_id,
                    task_queue=settings.chat_task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )
                req = TurnRequest(
                    turn_id=uuid.uuid4().hex, user_id="u1", message=f"m{n}", submitted_at=datetime.now(UTC)
                )
                results.append(
                    await env.client.execute_update_with_start_workflow(
                        ChatSessionWorkflow.send_message, req, start_workflow_operation=start
                    )
                )
            handle = env.client.get_workflow_handle_for(ChatSessionWorkflow.run, wf_id)
            state = await handle.query(ChatSessionWorkflow.state)
            runs = [wf async for wf in env.client.list_workflows(f'WorkflowId = "{wf_id}"')]
    finally:
        await env.shutdown()

    assert [r.message.content for r in results] == [f"Echo: m{n}" for n in range(6)]
    assert len(runs) >= 2, "the session should have continued as new at least once"
    assert any(r.status is not None and r.status.name == "CONTINUED_AS_NEW" for r in runs)
    assert state.turn_count == 6  # carried across runs
    users = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "user"]
    assert users == [f"m{n}" for n in range(6)]
