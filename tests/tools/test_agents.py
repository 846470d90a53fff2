"""Agents are declared in YAML: instructions, model, tools, step limit; a session records its agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client

from core.errors import KeelError
from infra.agents import AgentRegistry
from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.openai_server import FakeOpenAI

HR_AGENT = """
name: hr
version: "3"
description: Answers HR questions only.
instructions: You are the HR assistant of Example Corp. Answer HR questions only.
model: fake-hr-model
temperature: 0.1
tools: []
step_limit: 2
"""


def test_registry_loads_packaged_default_and_folder(tmp_path: Path) -> None:
    (tmp_path / "hr.yaml").write_text(HR_AGENT)
    registry = AgentRegistry.load(tmp_path)
    assert [a.name for a in registry.all()] == ["default", "hr"]
    hr = registry.get("hr")
    assert hr.revision.startswith("3+") and hr.step_limit == 2
    assert not hr.offers("time__get_current_time")
    assert registry.get("default").offers("time__get_current_time")
    (tmp_path / "broken.yaml").write_text("name: Not Valid!\ninstructions: x\n")
    with pytest.raises(KeelError, match="invalid agent definition"):
        AgentRegistry.load(tmp_path)


async def test_session_runs_and_records_its_agent(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, tmp_path: Path
) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "hr.yaml").write_text(HR_AGENT)
    with_agents = settings.model_copy(update={"agents_path": folder})
    async with running_platform(with_agents, temporal_client) as api:
        user = await api.auth("agent-user")
        listed = (await api.http.get("/api/v1/agents", headers=user)).json()
        assert {a["name"] for a in listed["agents"]} == {"default", "hr"} and listed["default"] == "default"
        unknown = await api.http.post("/api/v1/chat", json={"message": "hi", "agent": "nope"}, headers=user)
        assert unknown.status_code == 422

        first = (
            await api.http.post("/api/v1/chat", json={"message": "holiday?", "agent": "hr"}, headers=user)
        ).json()
        request = llm.requests[-1]
        assert request["messages"][0]["content"].startswith("You are the HR assistant of Example Corp.")
        assert request["model"] == "fake-hr-model"
        assert request["temperature"] == 0.1
        await api.http.post(
            "/api/v1/chat",
            json={"message": "and sick leave?", "session_id": first["session_id"]},
            headers=user,
        )
        assert llm.requests[-1]["model"] == "fake-hr-model"  # the session keeps its agent
        detail = (await api.http.get(f"/api/v1/sessions/{first['session_id']}", headers=user)).json()
    assert detail["agent"] == "hr"
    assert detail["agent_version"].startswith("3+")
