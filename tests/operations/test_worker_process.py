"""``keel worker`` as an operator runs it: ``--queues``, its health port (probes and
``/metrics``), the Temporal SDK's own metrics, and the drain on SIGTERM: a worker told
to stop lets its running model call finish (no second model request), then exits 0,
and another worker carries the turn on."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx
import pytest
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import RunningApi, free_port
from tests.fakes.openai_server import FakeOpenAI
from tests.support.workers import spawn_worker, stop_workers

pytestmark = pytest.mark.slow


async def _wait_status(
    http: httpx.AsyncClient, url: str, status: int, timeout_s: float = 90
) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = await http.get(url)
            if last.status_code == status:
                return last
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered {status} (last: {last and last.status_code})")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_an_unknown_queue_group_is_one_line_and_exit_code_2() -> None:
    proc = _cli("worker", "--queues", "chat,gpu")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "keel worker: unknown queue group(s) ['gpu']; known: chat, retrieval, tools, ingest, audit, slack"
    )


async def test_worker_serves_probes_and_metrics_and_drains_on_sigterm(
    api: RunningApi, settings: Settings, llm: FakeOpenAI, temporal_client: Client
) -> None:
    health, sdk_metrics = free_port(), free_port()
    env = {
        "KEEL_WORKER_HEALTH_PORT": str(health),
        "KEEL_TEMPORAL_METRICS_PORT": str(sdk_metrics),
        "KEEL_WORKER_SHUTDOWN_GRACE_S": "60",
    }
    headers = await api.auth("drain-user")
    first = spawn_worker(settings, "--queues", "chat,retrieval,tools", **env)
    second: subprocess.Popen[bytes] | None = None
    base = f"http://127.0.0.1:{health}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await _wait_status(http, f"{base}/health/ready", 200)
            assert (await http.get(f"{base}/health/live")).json() == {"status": "ok"}
            scraped = await http.get(f"{base}/metrics")
            assert scraped.status_code == 200 and "# HELP keel_" in scraped.text
            sdk = await http.get(f"http://127.0.0.1:{sdk_metrics}/metrics")
            assert sdk.status_code == 200 and "temporal_" in sdk.text  # the SDK's own exporter

            llm.hold()
            turn = asyncio.create_task(
                api.http.post("/api/v1/chat", json={"message": "finish me"}, headers=headers, timeout=120)
            )
            await asyncio.to_thread(llm.wait_for_request, 60)  # the model call streams, held mid-way
            first.send_signal(signal.SIGTERM)
            draining = await _wait_status(http, f"{base}/health/ready", 503, timeout_s=30)
            assert draining.json() == {"status": "unavailable", "reason": "worker draining"}
            await asyncio.sleep(1.0)
            assert first.poll() is None, "the worker left before its running model call finished"
            llm.release()
            assert await asyncio.to_thread(first.wait, 60) == 0
        # The drained worker finished the model call; the workflow task after it goes to another.
        second = spawn_worker(settings, **env | {"KEEL_WORKER_HEALTH_PORT": str(free_port())})
        resp = await asyncio.wait_for(turn, timeout=120)
    finally:
        llm.release()
        stop_workers(first, second)
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["status"] == "completed" and body["message"]["content"] == "Echo: finish me"
    assert llm.request_count == 1  # drained, not killed: the model was not called again


async def test_a_taken_health_port_is_one_line_and_exit_code_1(settings: Settings) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn_worker(settings, "--queues", "audit", KEEL_WORKER_HEALTH_PORT=str(port))
        try:
            assert await asyncio.to_thread(proc.wait, 60) == 1
        finally:
            stop_workers(proc)
