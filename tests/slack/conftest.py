"""The Slack bot against real services: Keel's API (with ``/slack/*``) and workers (the
Slack worker included) on real Temporal, Postgres and Redis; Slack's Web API is the local
``FakeSlack`` (tests/fakes/slack_api.py) and the model the fake OpenAI server. Requests
from "Slack" are signed exactly as Slack signs them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import (
    app_mention_event,
    block_actions_form,
    event_callback,
    message_event,
    sign_request,
    slash_command_form,
)
from tests.tools.conftest import counter, empty_allowlist  # noqa: F401 - fixtures for the approval tests

SIGNING_SECRET = "test-signing-secret"


@pytest.fixture(scope="session")
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack(fake_slack: FakeSlack) -> Iterator[FakeSlack]:
    fake_slack.reset()
    yield fake_slack
    fake_slack.reset()


@pytest.fixture
def slack_settings(settings: Settings, slack: FakeSlack) -> Settings:
    return settings.model_copy(
        update={
            "slack_bot_token": SecretStr(slack.bot_token),
            "slack_signing_secret": SecretStr(SIGNING_SECRET),
            "slack_api_url": slack.api_url,
            "slack_task_queue": f"keel-slack-test-{uuid.uuid4().hex[:8]}",
            "slack_post_interval_s": 0.05,
            "slack_cache_s": 0,
            "web_base_url": "https://keel.example.test",
        }
    )


@dataclass
class SlackBot:
    """Keel with Slack on, and what Slack would send it."""

    api: RunningApi
    slack: FakeSlack
    settings: Settings
    #: Keel user ids are made unique per test: Redis (and its sign-in throttle) outlives a test database.
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def team(self) -> str:
        return self.slack.team_id

    async def post(self, path: str, body: bytes, content_type: str, **headers: str) -> httpx.Response:
        signed = sign_request(body, SIGNING_SECRET)
        return await self.api.http.post(
            path, content=body, headers={**signed, "Content-Type": content_type, **headers}
        )

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, **headers: str
    ) -> httpx.Response:
        envelope = event_callback(
            event, team_id=self.team, event_id=event_id, bot_user_id=self.slack.bot_user_id
        )
        return await self.post("/slack/events", json.dumps(envelope).encode(), "application/json", **headers)

    async def dm(
        self, user: str, channel: str, text: str, *, ts: str | None = None, thread_ts: str | None = None
    ) -> tuple[httpx.Response, str]:
        ts = ts or f"{time.time():.6f}"
        resp = await self.event(
            message_event(user, channel, text, ts, thread_ts=thread_ts, channel_type="im")
        )
        return resp, ts

    async def mention(
        self, user: str, channel: str, text: str, *, ts: str | None = None, thread_ts: str | None = None
    ) -> tuple[httpx.Response, str]:
        ts = ts or f"{time.time():.6f}"
        event = app_mention_event(
            user, channel, f"<@{self.slack.bot_user_id}> {text}", ts, thread_ts=thread_ts
        )
        resp = await self.event(event)
        return resp, ts

    async def command(self, user: str, channel: str, text: str) -> httpx.Response:
        body = slash_command_form(
            text=text,
            user_id=user,
            channel_id=channel,
            team_id=self.team,
            response_url=self.slack.response_url(),
            trigger_id=f"trig-{uuid.uuid4().hex[:10]}",
        )
        return await self.post("/slack/commands", body, "application/x-www-form-urlencoded")

    async def click(
        self, user: str, channel: str, message_ts: str, action_id: str, approval_id: str
    ) -> httpx.Response:
        body = block_actions_form(
            user, self.team, channel, message_ts, action_id, approval_id, self.slack.response_url()
        )
        return await self.post("/slack/interactions", body, "application/x-www-form-urlencoded")

    def user_id(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    async def keel_user(
        self, name: str, email: str, *, groups: list[str] | None = None, **claims: Any
    ) -> str:
        """A Keel user (id ``user_id(name)``) who signed in once, so the user directory knows
        their email; returns a token for the API."""
        token = await self.api.token(self.user_id(name), email=email, groups=groups or [], **claims)
        resp = await self.api.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        return token


@pytest.fixture
async def bot(slack_settings: Settings, slack: FakeSlack, temporal_client: Client) -> AsyncIterator[SlackBot]:
    async with running_platform(slack_settings, temporal_client) as running:
        yield SlackBot(api=running, slack=slack, settings=slack_settings)
