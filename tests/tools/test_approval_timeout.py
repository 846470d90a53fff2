"""An approval that nobody decides for days expires (time-skipping test server):
the tool never runs and the model is told it was not approved."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.models.chat import ChatSessionInput, SessionLimits, TurnRequest
from core.names import chat_workflow_id
from infra.db.pool import create_pool
from infra.db.tools_repo import ToolsRepository
from infra.knowledge import open_knowledge
from infra.settings import Settings
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from workers.chat_worker import chat_activities, running_chat_workers
from workflows.chat_session import ChatSessionWorkflow

pytestmark = pytest.mark.slow


async def test_three_day_approval_expires(settings: Settings, llm: FakeOpenAI) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    pool = await create_pool(str(settings.database_url))
    tool_settings = settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})
    try:
        with CounterMcpServer() as counter:
            server = await ToolsRepository(pool).create_server(
                name="slowapproval", transport="http", url=counter.url, requires_approval=True, created_by="t"
            )
            await ToolsRepository(pool).set_discovered(
                server.id, [{"name": "record_event", "description": "", "input_schema": {"type": "object"}}]
            )
            llm.enqueue(
                ToolCalls([ToolCall("slowapproval__record_event", json.dumps({"name": "late"}))]),
                Reply("Nobody approved it."),
            )
            session_id = uuid.uuid4().hex
            async with (
                open_knowledge(tool_settings) as knowledge,
                chat_activities(tool_settings, knowledge) as activities,
                running_chat_workers(env.client, tool_settings, activities),
            ):
                handle = await env.client.start_workflow(
                    ChatSessionWorkflow.run,
                    ChatSessionInput(
                        session_id=session_id,
                        user_id="slow-approver",
                        limits=SessionLimits(approval_timeout_s=3 * 24 * 3600, idle_timeout_s=30 * 24 * 3600),
                        queues=tool_settings.activity_queues,
                    ),
                    id=chat_workflow_id(session_id),
                    task_queue=tool_settings.chat_task_queue,
                )
                update = await handle.start_update(
                    ChatSessionWorkflow.send_message,
                    TurnRequest(
                        turn_id=uuid.uuid4().hex,
                        user_id="slow-approver",
                        message="record it",
                        submitted_at=datetime.now(UTC),
                        search_knowledge=False,
                    ),
                    wait_for_stage=WorkflowUpdateStage.COMPLETED,
                )
                first = await update.result()
                assert first.status == "awaiting_approval"
                await env.sleep(timedelta(days=3, hours=1))  # skipped, not waited
                state = await handle.query(ChatSessionWorkflow.state)
                for _ in range(100):
                    if state.turn_count == 1:
                        break
                    await env.sleep(timedelta(seconds=1))
                    state = await handle.query(ChatSessionWorkflow.state)
            assert state.turn_count == 1
            assert counter.executions == 0
            assert (
                "not approved in time"
                in next(m for m in llm.requests[-1]["messages"] if m["role"] == "tool")["content"]
            )
    finally:
        conn = await asyncpg.connect(str(settings.database_url))
        await conn.execute("UPDATE tool_servers SET deleted_at = now() WHERE deleted_at IS NULL")
        await conn.close()
        await pool.close()
        await env.shutdown()
