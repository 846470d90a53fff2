"""Kill the worker process while the LLM activity is in flight: a restarted worker
finishes the turn, the user gets exactly one answer, the transcript has no duplicate."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest
from temporalio.client import Client

from core.names import chat_workflow_id
from infra.settings import Settings
from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI
from tests.support.workers import spawn_worker

pytestmark = pytest.mark.slow


def _spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return spawn_worker(settings)


async def test_worker_killed_mid_llm_call(
    api: RunningApi, settings: Settings, llm: FakeOpenAI, temporal_client: Client
) -> None:
    headers = await api.auth("crash-user")
    first_worker = _spawn_worker(settings)
    second_worker: subprocess.Popen[bytes] | None = None
    try:
        llm.hold()
        turn = asyncio.create_task(
            api.http.post("/api/v1/chat", json={"message": "survive this"}, headers=headers, timeout=90)
        )
        await asyncio.to_thread(llm.wait_for_request, 30)  # the model call is streaming, held mid-way
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(timeout=10)
        llm.release()
        second_worker = _spawn_worker(settings)
        resp = await asyncio.wait_for(turn, timeout=90)
    finally:
        for proc in (first_worker, second_worker):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)

    body = resp.json()
    assert resp.status_code == 200, body
    assert body["status"] == "completed"
    assert body["message"]["content"] == "Echo: survive this"
    assert llm.request_count == 2  # the killed attempt and the retry

    detail = (await api.http.get(f"/api/v1/sessions/{body['session_id']}", headers=headers)).json()
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [
        ("user", "survive this"),
        ("assistant", "Echo: survive this"),
    ]
    assert detail["turn_count"] == 1

    history = await temporal_client.get_workflow_handle(chat_workflow_id(body["session_id"])).fetch_history()
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert 2 in started  # the LLM activity really was retried after the crash
