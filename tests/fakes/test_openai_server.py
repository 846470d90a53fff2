"""Tests for the fake OpenAI server, driven through the official ``openai`` client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_server import (
    Error,
    FakeOpenAI,
    Garbage,
    Hang,
    Reply,
    ToolCall,
    ToolCalls,
    Truncate,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there world"},
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=10)


def test_non_stream_echo_with_usage(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: hello there world"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 6  # "You are terse." + "hello there world"
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == 10
    assert fake.request_count == 1
    assert fake.requests[0]["messages"] == MESSAGES
    assert fake.request_log[0].path == "/v1/chat/completions"
    assert fake.request_log[0].headers["authorization"] == "Bearer x"


def test_stream_deltas_reassemble_and_usage_arrives(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Reply("The quick brown fox jumps over the lazy dog."))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) == 9  # word by word
    assert "".join(contents) == "The quick brown fox jumps over the lazy dog."
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9
    assert chunks[-1].usage.prompt_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Echo: hello there world"


async def test_async_client_streams_with_timing(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply("one two three", ttft_s=0.1, chunk_delay_s=0.02))
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
    start = time.monotonic()
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    pieces: list[str] = []
    first_token_at: float | None = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first_token_at = first_token_at or time.monotonic() - start
            pieces.append(chunk.choices[0].delta.content)
    elapsed = time.monotonic() - start
    await client.close()

    assert "".join(pieces) == "one two three"
    assert first_token_at is not None and first_token_at >= 0.09
    assert elapsed >= 0.13


def test_streamed_tool_calls_reassemble(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    weather_args = json.dumps({"city": "Paris", "unit": "celsius", "days": 3})
    fake.enqueue(
        ToolCalls(
            [
                ToolCall("get_weather", weather_args, id="call_weather"),
                ToolCall("get_time", '{"tz": "Europe/Paris"}'),
            ]
        )
    )
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)

    calls: dict[int, dict[str, str]] = {}
    finish_reason = None
    fragments = 0
    for chunk in stream:
        choice = chunk.choices[0]
        finish_reason = choice.finish_reason or finish_reason
        for tc in choice.delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                entry["id"] = tc.id
                assert tc.type == "function"
            if tc.function and tc.function.name:
                entry["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                entry["arguments"] += tc.function.arguments
                fragments += 1

    assert finish_reason == "tool_calls"
    assert calls[0] == {"id": "call_weather", "name": "get_weather", "arguments": weather_args}
    assert calls[1]["name"] == "get_time"
    assert calls[1]["id"].startswith("call_")
    assert json.loads(calls[1]["arguments"]) == {"tz": "Europe/Paris"}
    assert fragments > 2  # arguments really arrive in pieces


def test_non_stream_tool_calls(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(ToolCalls([ToolCall("lookup", '{"q": "keel"}', id="call_1")]))
    completion = client.chat.completions.create(model="m", messages=MESSAGES)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "lookup", '{"q": "keel"}')


def test_rate_limit_error_with_retry_after(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Error(429, "Rate limit reached", code="rate_limit_exceeded", type="requests", retry_after=2))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.type == "requests"
    assert "Rate limit reached" in info.value.message
    # the queue is consumed; the next request gets the default again
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content


def test_other_error_statuses(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Error(), Error(400, "bad", type="invalid_request_error"), Error(401, "nope"))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", messages=MESSAGES)


def test_missing_api_key_is_401_with_openai_error_shape(fake: FakeOpenAI) -> None:
    response = httpx.post(f"{fake.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert fake.request_count == 0


def test_garbage_raises(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    # With a body claiming to be JSON, the openai client (3.x) fails while decoding it:
    # a plain ValueError (json.JSONDecodeError), not an openai.APIError.
    fake.enqueue(Garbage(), Garbage())
    with pytest.raises(ValueError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(ValueError):
        list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    # With strict response validation, a non-JSON content type is an openai error.
    strict = openai.OpenAI(
        base_url=fake.base_url, api_key="x", max_retries=0, _strict_response_validation=True
    )
    fake.enqueue(Garbage(content_type="text/html"))
    with pytest.raises(openai.APIResponseValidationError):
        strict.chat.completions.create(model="m", messages=MESSAGES)


def test_truncate_is_a_connection_error(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Truncate("one two three four five", after_chunks=2), Truncate())
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "one two "
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)


def test_hang_does_not_block_other_requests(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Hang(0.6, then=Reply("late")))
    results: dict[str, float] = {}

    def slow() -> None:
        start = time.monotonic()
        out = client.chat.completions.create(model="m", messages=MESSAGES)
        assert out.choices[0].message.content == "late"
        results["slow"] = time.monotonic() - start

    thread = threading.Thread(target=slow)
    thread.start()
    fake.wait_for_request(timeout=2)
    start = time.monotonic()
    fast = client.chat.completions.create(model="m", messages=MESSAGES)
    results["fast"] = time.monotonic() - start
    thread.join(5)

    assert fast.choices[0].message.content == "Echo: hello there world"
    assert results["fast"] < 0.3
    assert results["slow"] >= 0.55


def test_client_timeout_on_hang(fake: FakeOpenAI) -> None:
    fake.enqueue(Hang(5))
    client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES)


def test_default_callable_fifo_and_reset(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    seen: list[str] = []

    def responder(body: dict[str, Any]) -> Reply:
        seen.append(body["model"])
        return Reply(f"default for {body['model']}")

    fake.set_default(responder)
    fake.enqueue(Reply("first"), Reply("second"))
    assert fake.pending == 2
    texts = [
        client.chat.completions.create(model=f"m{i}", messages=MESSAGES).choices[0].message.content
        for i in range(3)
    ]
    assert texts == ["first", "second", "default for m2"]
    assert seen == ["m2"]
    assert fake.request_count == 3
    assert [r["model"] for r in fake.requests] == ["m0", "m1", "m2"]

    fake.enqueue(Reply("never"))
    fake.reset()
    assert (fake.pending, fake.request_count, fake.requests) == (0, 0, [])
    reply = client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
    assert reply == "Echo: hello there world"


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
    assert completion.choices[0].message.content == "Echo: hello"
    assert completion.choices[0].finish_reason == "length"


def test_hold_release_and_wait_for_request(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.hold()
    received: list[str] = []
    done = threading.Event()

    def consume() -> None:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    body = fake.wait_for_request(timeout=2)
    assert body["messages"] == MESSAGES
    deadline = time.monotonic() + 2
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received == ["Echo: "]  # headers and the first chunk went out ...
    assert not done.wait(0.2)  # ... and then the stream blocks
    assert fake.held_count == 1

    fake.release()
    thread.join(2)
    assert done.is_set()
    assert "".join(received) == "Echo: hello there world"
    assert fake.held_count == 0
    with pytest.raises(TimeoutError):
        fake.wait_for_request(timeout=0.05)


def test_hold_with_client_in_another_process(fake: FakeOpenAI) -> None:
    script = (
        "import sys, openai\n"
        "c = openai.OpenAI(base_url=sys.argv[1], api_key='x', max_retries=0)\n"
        "r = c.chat.completions.create(model='m', messages=[{'role': 'user', 'content': 'from child'}])\n"
        "sys.stdout.write(r.choices[0].message.content)\n"
    )
    fake.hold()
    child = subprocess.Popen(
        [sys.executable, "-c", script, fake.base_url],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        body = fake.wait_for_request(timeout=8)
        assert body["messages"][0]["content"] == "from child"
        assert child.poll() is None  # blocked on the held response
        fake.release()
        out, _ = child.communicate(timeout=8)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.decode() == "Echo: from child"


def test_azure_client_with_deployment(fake: FakeOpenAI) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=fake.root_url, api_version="2024-10-21", api_key="x", max_retries=0
    )
    completion = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    assert completion.choices[0].message.content == "Echo: hello there world"
    assert completion.model == "my-deployment"
    chunks = list(client.chat.completions.create(model="my-deployment", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello there world"

    recorded = fake.request_log[0]
    assert recorded.path == "/openai/deployments/my-deployment/chat/completions"
    assert recorded.headers["api-key"] == "x"
    assert fake.request_count == 2


def test_models_endpoint(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_start_stop_frees_the_port() -> None:
    fake = FakeOpenAI().start()
    url = fake.base_url
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    assert fake.root_url == url.removesuffix("/v1")
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", headers={"Authorization": "Bearer x"}, timeout=1)
