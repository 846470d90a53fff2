"""Worker killed during a tool call: the turn completes and the side effect ran once
(the retried activity sends the same idempotency key; the server deduplicates)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess

import pytest

from infra.settings import Settings
from tests.conftest import RunningApi
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.support.workers import spawn_worker

pytestmark = pytest.mark.slow


def _spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return spawn_worker(settings, KEEL_TOOL_ALLOWED_HOSTS='["127.0.0.1"]')


async def test_worker_killed_mid_tool_call(
    settings: Settings, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    from tests.conftest import serve_api

    api_settings = settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})
    server, task = await serve_api(api_settings)
    api = RunningApi(api_settings)
    worker = _spawn_worker(settings)
    second: subprocess.Popen[bytes] | None = None
    try:
        admin = {"Authorization": f"Bearer {await api.token('crash-tool-admin', roles=['OrgAdmin'])}"}
        added = await api.http.post(
            "/api/v1/admin/tools",
            json={
                "name": "crashctr",
                "transport": "http",
                "url": counter.url,
                "timeout_s": 5,
                "max_retries": 3,
            },
            headers=admin,
            timeout=120,
        )
        assert added.status_code == 201, added.text
        user = await api.auth("crash-tool-user")
        llm.enqueue(
            ToolCalls([ToolCall("crashctr__record_event", json.dumps({"name": "payment"}))]), Reply("Done.")
        )
        counter.hold()  # the side effect happens, then the answer is held
        turn = asyncio.create_task(
            api.http.post("/api/v1/chat", json={"message": "pay"}, headers=user, timeout=120)
        )
        call = await asyncio.to_thread(counter.wait_for_call, 60)
        assert call.idempotency_key
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        counter.release()
        second = _spawn_worker(settings)
        resp = await asyncio.wait_for(turn, timeout=120)
    finally:
        for proc in (worker, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        await api.http.aclose()
        server.should_exit = True
        await task
        import asyncpg

        conn = await asyncpg.connect(str(settings.database_url))
        await conn.execute("UPDATE tool_servers SET deleted_at = now() WHERE deleted_at IS NULL")
        await conn.close()

    body = resp.json()
    assert body["status"] == "completed", body
    assert body["message"]["content"] == "Done."
    assert [c["status"] for c in body["tool_calls"]] == ["completed"]
    assert counter.call_count >= 2  # the retried activity called again ...
    assert counter.executions == 1  # ... and the side effect ran once
