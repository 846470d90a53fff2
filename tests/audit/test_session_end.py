"""A conversation the workflow closes itself (idle timeout) is audited once as
``session.ended`` with reason ``idle``; a deleted one is audited by the API."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from core.names import chat_workflow_id
from infra.settings import Settings
from tests.audit.test_scenario import audit_events
from tests.conftest import running_platform
from tests.fakes.openai_server import FakeOpenAI
from workflows.chat_session import ChatSessionWorkflow


async def test_idle_end_is_audited_once(settings: Settings, temporal_client: Client, llm: FakeOpenAI) -> None:
    quick = settings.model_copy(update={"chat_idle_timeout_s": 1})
    async with running_platform(quick, temporal_client) as api:
        user_id = f"idle-{uuid.uuid4().hex[:6]}"
        user = await api.auth(user_id)
        admin = {"Authorization": f"Bearer {await api.token('idle-auditor', roles=['OrgAdmin'])}"}
        turn = await api.http.post("/api/v1/chat", json={"message": "hello"}, headers=user)
        assert turn.status_code == 200, turn.text
        session_id = turn.json()["session_id"]

        handle = temporal_client.get_workflow_handle_for(
            ChatSessionWorkflow.run, chat_workflow_id(session_id)
        )
        assert (await handle.result()).reason == "idle"

        ended = await audit_events(api, admin, user_id=user_id, event="session.ended")
        assert len(ended) == 1, ended
        [event] = ended
        assert event["session_id"] == session_id and event["details"]["reason"] == "idle"
        assert event["details"]["turn_count"] == 1
        started = await audit_events(api, admin, user_id=user_id, event="session.started")
        assert [e["session_id"] for e in started] == [session_id]
