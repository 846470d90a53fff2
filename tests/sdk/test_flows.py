"""keel_sdk on the flows that need their own platform: tool approvals (a real MCP
server) and retries against the real rate limiter."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis
from keel_sdk import ApprovalRequired, AsyncKeelClient, ConflictError, RateLimitError, TurnCompleted
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.sdk.conftest import sdk_client


@pytest.mark.slow
@pytest.mark.usefixtures("empty_allowlist")
async def test_approvals_approve_deny_and_a_stream_that_pauses(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    tool_settings = settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})
    async with running_platform(tool_settings, temporal_client) as api:
        admin = await sdk_client(api, "sdk-tool-admin", roles=["OrgAdmin"])
        user = await sdk_client(api, "sdk-appr")
        server = await admin.admin.tools.add(
            name="counter", transport="http", url=counter.url, requires_approval=True
        )
        assert [s.id for s in (await admin.admin.tools.list()).tool_servers] == [server.id]
        assert any(t.name == "counter__record_event" for t in (await user.tools.list()).tools)

        call = ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "deploy"}))])
        llm.enqueue(call, Reply("Recorded."))
        waiting = await user.chat("record deploy")
        assert waiting.status == "awaiting_approval" and waiting.approvals
        [approval] = waiting.approvals
        assert [a.id for a in (await user.approvals.list()).approvals] == [approval.id]
        decided = await user.approvals.approve(approval.id)
        assert decided.status == "approved" and counter.executions <= 1
        with pytest.raises(ConflictError) as caught:
            await user.approvals.deny(approval.id, "too late")
        assert caught.value.code == "stale_request"

        # A stream pauses at approval.required; after the decision it is followed to the end.
        llm.enqueue(
            ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "x"}))]), Reply("Denied.")
        )
        stream = user.chat_stream("record x")
        events = [e async for e in stream]
        assert isinstance(events[-1], ApprovalRequired) and stream.response is None
        await user.approvals.deny(events[-1].id, "not today")
        assert stream.session_id and stream.turn_id
        rest = [
            e
            async for e in user.turns.events(
                stream.session_id, stream.turn_id, last_event_id=stream.last_event_id
            )
        ]
        assert isinstance(rest[-1], TurnCompleted) and rest[-1].response.message.content == "Denied."
        assert counter.executions == 1
        await admin.admin.tools.update(server.id, enabled=False)
        assert not any(s.enabled for s in (await admin.admin.tools.list()).tool_servers)
        await admin.close()
        await user.close()


async def test_retries_honour_retry_after_from_the_rate_limiter(
    settings: Settings, temporal_client: Client, redis_url: str
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 3})
    async with running_platform(limited, temporal_client) as api:
        user_id = f"sdk-rl-{uuid.uuid4().hex[:6]}"
        token = await api.token(user_id)
        redis = aioredis.from_url(redis_url)
        try:
            # The user's window is full of requests made 58.5 s ago: the next one is refused
            # with Retry-After 2 (the real limiter's arithmetic), and admitted after that.
            seconds, micros = await redis.time()
            now_ms = seconds * 1000 + micros // 1000
            await redis.zadd(f"keel:ratelimit:{user_id}", {f"old-{i}": now_ms - 58_500 for i in range(3)})
        finally:
            await redis.aclose()

        async with AsyncKeelClient(base_url=api.base_url, token=token, max_retries=0) as impatient:
            with pytest.raises(RateLimitError) as caught:
                await impatient.chat("hello")
        err = caught.value
        assert err.status == 429 and err.code == "rate_limited" and err.request_id
        assert err.retry_after is not None and 1 <= err.retry_after <= 2

        started = time.monotonic()
        async with AsyncKeelClient(base_url=api.base_url, token=token, max_retries=2) as patient:
            answer = await patient.chat("hello")  # a POST refused with 429 never started: retried
        assert answer.message.content == "Echo: hello"
        assert time.monotonic() - started >= 0.9
        await asyncio.sleep(0)
