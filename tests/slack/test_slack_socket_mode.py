"""Socket Mode (``keel slack``) feeds the same bolt app: an envelope dispatched the way
bolt's Socket Mode adapter dispatches it is answered like an HTTP event (the websocket
itself needs Slack; bolt's own tests cover it). Without an app token, ``keel slack``
says what is missing and exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from slack_bolt.request.async_request import AsyncBoltRequest
from temporalio.client import Client

from slack_app.bolt_app import build_bolt_app
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_payloads import event_callback, message_event
from tests.slack.conftest import SlackBot
from tests.slack.test_slack_turns import ALICE, ALICE_DM, alice, shown, wait_answer


async def test_a_socket_mode_envelope_is_answered_like_an_http_event(
    bot: SlackBot, llm: FakeOpenAI, temporal_client: Client
) -> None:
    await alice(bot)
    llm.enqueue(Reply("Over the socket."))
    app = build_bolt_app(bot.settings, temporal_client)
    ts = f"{time.time():.6f}"
    body = event_callback(message_event(ALICE, ALICE_DM, "hi over socket mode", ts), team_id=bot.team)
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    assert response.status == 200
    msgs = await wait_answer(bot.slack, ALICE_DM, ts)
    assert [shown(m) for m in msgs] == ["Over the socket."]


def test_keel_slack_without_an_app_token_exits_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_SLACK")}
    env |= {"KEEL_SLACK_BOT_TOKEN": "xoxb-x", "KEEL_LOG_JSON": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "slack"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "KEEL_SLACK_APP_TOKEN" in done.stderr and "Traceback" not in done.stderr
