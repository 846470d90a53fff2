from __future__ import annotations

from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI


async def test_chat_turn_round_trip(platform: RunningApi, llm: FakeOpenAI) -> None:
    headers = await platform.auth("alice")
    resp = await platform.http.post("/api/v1/chat", json={"message": "hello there"}, headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "completed"
    assert body["message"]["content"] == "Echo: hello there"
    assert body["usage"]["completion_tokens"] > 0
