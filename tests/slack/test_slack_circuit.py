"""The Slack circuit: Slack's outages (5xx) open it, after which calls fail fast with
:class:`SlackCircuitOpen` (waited like a 429, for the time left open) without reaching
Slack; Slack's refusals of a bad request (``ok: false``) never count. State in the real
Redis, calls over HTTP to the fake Slack Web API."""

from __future__ import annotations

import uuid

import pytest

from infra.circuit import CircuitConfig, Circuits
from infra.redis_client import create_redis
from infra.settings import Settings
from infra.slack_web import SlackCallFailed, SlackCircuitOpen, slack_call, slack_web_client
from tests.fakes.slack_api import FakeSlack


async def test_slack_outages_open_the_circuit_and_refusals_do_not(
    slack: FakeSlack, slack_settings: Settings, redis_url: str
) -> None:
    redis = create_redis(redis_url)
    circuits = Circuits(
        redis=redis,
        configs={"slack": CircuitConfig(failures=2, window_s=30, open_s=60)},
        namespace=f"keel-test-{uuid.uuid4().hex[:8]}",
    )
    client = slack_web_client(slack_settings, circuits.get("slack"))
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    slack.add_channel(channel, name="general")
    try:
        slack.fail_next("chat.postMessage", "channel_not_found", times=3)  # our fault: never counts
        for _ in range(3):
            with pytest.raises(SlackCallFailed) as refused:
                await slack_call(client, "chat.postMessage", channel=channel, text="hi")
            assert refused.value.error == "channel_not_found" and refused.value.status == 200
        assert await circuits.get("slack").state() == "closed"

        slack.fail_next("chat.postMessage", "http_503", times=2)
        for _ in range(2):
            with pytest.raises(SlackCallFailed) as outage:
                await slack_call(client, "chat.postMessage", channel=channel, text="hi")
            assert outage.value.status == 503
        assert await circuits.get("slack").state() == "open"

        reached = len(slack.calls_to("chat.postMessage"))
        with pytest.raises(SlackCircuitOpen) as fast:
            await slack_call(client, "chat.postMessage", channel=channel, text="hi")
        assert 55 <= fast.value.retry_after_s <= 60  # the activity waits this long, as for a 429
        assert len(slack.calls_to("chat.postMessage")) == reached  # Slack was not called
    finally:
        await redis.aclose()
