"""Replay committed ChatSessionWorkflow histories with today's code.

A change that breaks determinism for running sessions fails here; such changes
go behind ``workflow.patched()``. To record fresh histories after a deliberate,
patched change: ``KEEL_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/workflows/test_replay.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.names import chat_workflow_id
from tests.conftest import RunningApi
from tests.fakes.openai_server import Error, FakeOpenAI, Reply
from workflows.chat_session import ChatSessionWorkflow

HISTORIES = Path(__file__).parent / "histories"


def _histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_histories_are_committed() -> None:
    assert len(_histories()) >= 3


@pytest.mark.parametrize("path", _histories(), ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(workflows=[ChatSessionWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


@pytest.mark.skipif(not os.environ.get("KEEL_RECORD_HISTORIES"), reason="records histories on demand")
async def test_record_histories(platform: RunningApi, llm: FakeOpenAI, temporal_client: Client) -> None:
    headers = await platform.auth("replay-user")

    async def save(name: str, session_id: str) -> None:
        history = await temporal_client.get_workflow_handle(chat_workflow_id(session_id)).fetch_history()
        payload = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
        (HISTORIES / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")

    # two turns, then delete (the run completes)
    llm.enqueue(Reply("first answer"), Reply("second answer"))
    first = (await platform.http.post("/api/v1/chat", json={"message": "one"}, headers=headers)).json()
    sid = first["session_id"]
    await platform.http.post("/api/v1/chat", json={"message": "two", "session_id": sid}, headers=headers)
    assert (await platform.http.delete(f"/api/v1/sessions/{sid}", headers=headers)).status_code == 204
    await save("two_turns_then_delete", sid)

    # a model call retried once, then answered
    llm.enqueue(Error(status=503, message="busy"), Reply("after a retry"))
    retried = (await platform.http.post("/api/v1/chat", json={"message": "retry"}, headers=headers)).json()
    await save("retried_model_call", retried["session_id"])

    # a non-retryable rejection fails the turn
    llm.enqueue(Error(status=400, message="bad request"))
    failed = (await platform.http.post("/api/v1/chat", json={"message": "reject"}, headers=headers)).json()
    assert failed["status"] == "failed"
    await save("rejected_model_call", failed["session_id"])
