"""Redis stopped and restarted while turns are in flight (a private ``redis-server`` on
its own port, so the machine's Redis and other tests are untouched; it keeps nothing on
disk, so it comes back empty, as a crashed cache would):

* a plain ``POST /chat`` and a streamed turn whose model is answering when Redis goes
  away both finish, each exactly once; the stream ends with ``turn.completed`` (from the
  finished turn: its Redis stream is gone) carrying the whole answer;
* a request arriving while Redis is down is admitted (``KEEL_RATE_LIMIT_FAIL_MODE=open``)
  and its turn finishes once Redis is back; with ``closed`` it is refused with
  ``503 upstream_unavailable`` and a request id.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import RunningApi, free_port, running_platform
from tests.fakes.openai_server import FakeOpenAI
from tests.support.model_requests import wait_for_requests
from tests.support.sse import collect

pytestmark = pytest.mark.slow


class PrivateRedis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (Debian's redis-server package)")
        self.binary, self.port = binary, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a crash, not a clean shutdown
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _chat(api: RunningApi, headers: dict[str, str], message: str) -> dict[str, Any]:
    resp = await api.http.post("/api/v1/chat", json={"message": message}, headers=headers, timeout=120)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _stream(api: RunningApi, headers: dict[str, str], message: str) -> tuple[str, list[Any]]:
    async with api.http.stream(
        "POST", "/api/v1/chat/stream", json={"message": message}, headers=headers, timeout=120
    ) as resp:
        assert resp.status_code == 200
        return resp.headers["x-session-id"], await collect(resp)


async def _transcript(api: RunningApi, headers: dict[str, str], session_id: str) -> list[tuple[str, str]]:
    detail = (await api.http.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
    return [(m["role"], m["content"]) for m in detail["messages"]]


async def test_turns_in_flight_survive_redis_going_away_and_coming_back(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, private_redis: PrivateRedis
) -> None:
    configured = settings.model_copy(update={"redis_url": private_redis.url, "rate_limit_fail_mode": "open"})
    async with running_platform(configured, temporal_client) as api:
        headers = await api.auth(f"redis-outage-{uuid.uuid4().hex[:8]}")
        assert (await _chat(api, headers, "before"))["status"] == "completed"
        base = llm.request_count
        llm.hold()
        plain = asyncio.create_task(_chat(api, headers, "plain during"))
        streamed = asyncio.create_task(_stream(api, headers, "streamed during"))
        await wait_for_requests(llm, base + 2)  # both model calls are streaming, held mid-way
        private_redis.stop()
        llm.release()  # the model answers while Redis is away: the live pieces have nowhere to go
        late = asyncio.create_task(_chat(api, headers, "sent while down"))
        await asyncio.sleep(3.0)
        private_redis.start()  # back, empty
        plain_body, (stream_session, events), late_body = await asyncio.wait_for(
            asyncio.gather(plain, streamed, late), timeout=120
        )
        answers = {
            "plain during": plain_body,
            "sent while down": late_body,
        }
        for message, body in answers.items():
            assert body["status"] == "completed", body
            assert body["message"]["content"] == f"Echo: {message}"
            assert await _transcript(api, headers, body["session_id"]) == [
                ("user", message),
                ("assistant", f"Echo: {message}"),
            ]
        assert events[-1].event == "turn.completed", [e.event for e in events]
        assert events[-1].data["message"]["content"] == "Echo: streamed during"
        assert await _transcript(api, headers, stream_session) == [
            ("user", "streamed during"),
            ("assistant", "Echo: streamed during"),
        ]
    assert llm.request_count == base + 3  # one model call per turn: none repeated, none lost


async def test_with_fail_mode_closed_a_request_while_redis_is_down_is_refused_clearly(
    settings: Settings, temporal_client: Client, private_redis: PrivateRedis
) -> None:
    configured = settings.model_copy(
        update={"redis_url": private_redis.url, "rate_limit_fail_mode": "closed"}
    )
    async with running_platform(configured, temporal_client) as api:
        headers = await api.auth(f"redis-closed-{uuid.uuid4().hex[:8]}")
        private_redis.stop()
        resp = await api.http.post("/api/v1/chat", json={"message": "hello"}, headers=headers)
        assert resp.status_code == 503, resp.text
        error = resp.json()["error"]
        assert error["code"] == "upstream_unavailable"
        assert error["request_id"] == resp.headers["x-request-id"]
        assert "Traceback" not in resp.text
        private_redis.start()
