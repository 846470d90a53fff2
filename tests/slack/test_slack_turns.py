"""A Slack message is a chat turn: DMs and @mentions answered in the thread, a thread is
one session, Slack's retried deliveries never make a second answer or model call, and
every request must carry Slack's signature."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from temporalio.client import Client

from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_payloads import event_callback, message_event, sign_request
from tests.slack.conftest import SIGNING_SECRET, SlackBot

ALICE, ALICE_DM = "UALICE", "DALICE"


def shown(msg: Message) -> str:
    """What a person sees of a bot message: the streamed text, or its markdown blocks."""
    if msg.stream:
        return msg.text
    parts = [b.get("text", "") for b in msg.blocks or [] if b.get("type") == "markdown"]
    return "\n".join(parts) if parts else msg.text


def answers(slack: FakeSlack, channel: str, thread_ts: str) -> list[Message]:
    """The bot's answer in a thread: its streamed or markdown messages (not approval requests)."""
    return [
        m
        for m in slack.messages(channel, thread_ts=thread_ts)
        if m.user == slack.bot_user_id
        and (m.stream or any(b.get("type") == "markdown" for b in m.blocks or []))
    ]


def finished(slack: FakeSlack, channel: str, thread_ts: str) -> bool:
    """The answer is complete: no stream open, and its last message ends with the rule footer."""
    msgs = answers(slack, channel, thread_ts)
    footer = json.dumps(msgs[-1].blocks or []) if msgs else ""
    return (
        bool(msgs) and not any(m.streaming for m in msgs) and ("Searched" in footer or "searched" in footer)
    )


async def wait_answer(slack: FakeSlack, channel: str, thread_ts: str, timeout_s: float = 40) -> list[Message]:
    await slack.wait_for_async(lambda s: finished(s, channel, thread_ts), timeout_s=timeout_s)
    return answers(slack, channel, thread_ts)


async def alice(bot: SlackBot) -> None:
    bot.slack.add_user(ALICE, email="alice@example.com", real_name="Alice")
    bot.slack.add_channel(ALICE_DM, is_im=True, user=ALICE)
    await bot.keel_user("alice", "alice@example.com")


async def test_a_dm_is_answered_in_its_thread_and_the_thread_continues_the_session(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await alice(bot)
    llm.enqueue(Reply("Paris is the capital of France."), Reply("About two million people live there."))
    resp, ts = await bot.dm(ALICE, ALICE_DM, "What is the capital of France?")
    assert resp.status_code == 200, resp.text
    first = await wait_answer(bot.slack, ALICE_DM, ts)
    assert [shown(m) for m in first] == ["Paris is the capital of France."]
    assert first[0].stream, "the answer streams with chat.startStream by default"
    footer = [b for b in first[0].blocks or [] if b.get("type") == "context"]
    assert "your own access" in json.dumps(footer)

    await bot.dm(ALICE, ALICE_DM, "How many people live there?", thread_ts=ts)
    await bot.slack.wait_for_async(lambda s: len(answers(s, ALICE_DM, ts)) == 2 and finished(s, ALICE_DM, ts))
    assert llm.request_count == 2
    history = json.dumps(llm.requests[1]["messages"])
    assert "What is the capital of France?" in history and "Paris is the capital of France." in history

    # A new top-level DM is a new thread: a new session, without that history.
    _, ts2 = await bot.dm(ALICE, ALICE_DM, "Hello again")
    await wait_answer(bot.slack, ALICE_DM, ts2)
    assert "capital of France" not in json.dumps(llm.requests[2]["messages"])
    statuses = [s.status for s in bot.slack.assistant_statuses if s.thread_ts == ts]
    assert statuses and statuses[0], "the thread showed a status while the agent worked"


async def test_one_event_delivered_four_times_makes_one_answer_and_one_model_call(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await alice(bot)
    llm.hold()
    ts = f"{time.time():.6f}"
    event = message_event(ALICE, ALICE_DM, "Tell me a fact", ts, channel_type="im")
    first = await bot.event(event, event_id="Ev001")
    assert first.status_code == 200
    await asyncio.to_thread(llm.wait_for_request, 30)
    # Slack's retries (while the first is still being answered): same event, retry headers.
    for n in (1, 2, 3):
        retry = await bot.event(
            event, event_id="Ev001", **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"}
        )
        assert retry.status_code == 200
    llm.release()
    msgs = await wait_answer(bot.slack, ALICE_DM, ts)
    await asyncio.sleep(1.0)  # time for a second answer to appear, if there were one
    assert len(answers(bot.slack, ALICE_DM, ts)) == 1 == len(msgs)
    assert llm.request_count == 1
    # A redelivery after the turn finished starts nothing either.
    late = await bot.event(event, event_id="Ev001", **{"X-Slack-Retry-Num": "3"})
    assert late.status_code == 200
    await asyncio.sleep(1.0)
    assert llm.request_count == 1 and len(answers(bot.slack, ALICE_DM, ts)) == 1


async def test_an_app_mention_and_its_message_event_are_one_turn(bot: SlackBot, llm: FakeOpenAI) -> None:
    await alice(bot)
    bot.slack.add_channel("CGEN", name="general", members=[ALICE, bot.slack.bot_user_id])
    resp, ts = await bot.mention(ALICE, "CGEN", "what's new?")
    assert resp.status_code == 200
    # Slack also sends the plain message event for the same ts (channel_type channel).
    mention_text = f"<@{bot.slack.bot_user_id}> what's new?"
    await bot.event(message_event(ALICE, "CGEN", mention_text, ts, channel_type="channel"))
    msgs = await wait_answer(bot.slack, "CGEN", ts)
    await asyncio.sleep(0.5)
    assert len(msgs) == 1 and llm.request_count == 1
    assert msgs[0].recipient_user_id == ALICE, "a channel stream names its recipient"
    assert "everyone in the organisation" in json.dumps(msgs[0].blocks), "a public channel's rule"


async def _raw(bot: SlackBot, body: bytes, headers: dict[str, str]) -> Any:
    return await bot.api.http.post(
        "/slack/events", content=body, headers={**headers, "Content-Type": "application/json"}
    )


async def test_unsigned_forged_and_stale_requests_are_refused(bot: SlackBot, llm: FakeOpenAI) -> None:
    await alice(bot)
    body = json.dumps(
        event_callback(message_event(ALICE, ALICE_DM, "hi", f"{time.time():.6f}"), team_id=bot.team)
    ).encode()
    unsigned = await _raw(bot, body, {})
    forged = await _raw(bot, body, sign_request(body, "not-the-secret"))
    tampered = await _raw(bot, body + b" ", sign_request(body, SIGNING_SECRET))
    stale = await _raw(bot, body, sign_request(body, SIGNING_SECRET, timestamp=int(time.time()) - 6 * 60))
    for resp in (unsigned, forged, tampered, stale):
        assert resp.status_code == 401, resp.text
        error = resp.json()["error"]
        assert error["code"] == "invalid_signature" and error["request_id"]
    await asyncio.sleep(1.0)
    assert llm.request_count == 0 and not bot.slack.calls_to("chat.startStream")


async def test_someone_keel_does_not_know_is_told_to_sign_in_and_nothing_reaches_the_model(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    bot.slack.add_user("UBOB", email="bob@example.com", real_name="Bob")
    bot.slack.add_channel("DBOB", is_im=True, user="UBOB")
    bot.slack.add_user("UGUEST", email="guest@example.com", is_restricted=True)
    bot.slack.add_channel("DGUEST", is_im=True, user="UGUEST")
    await bot.keel_user("guest", "guest@example.com")  # even signed in, a Slack guest is refused
    await bot.dm("UBOB", "DBOB", "hello")
    await bot.dm("UGUEST", "DGUEST", "hello")
    await bot.slack.wait_for_async(lambda s: bool(s.ephemerals("DBOB")) and bool(s.ephemerals("DGUEST")))
    assert "Sign in to Keel once at https://keel.example.test/" in bot.slack.ephemerals("DBOB")[0].text
    assert "Guests" in bot.slack.ephemerals("DGUEST")[0].text
    assert llm.request_count == 0
    assert not [m for m in bot.slack.messages("DBOB") if m.user == bot.slack.bot_user_id]


async def test_bot_posts_never_unfurl(bot: SlackBot, llm: FakeOpenAI) -> None:
    await alice(bot)
    bot.slack.add_channel("CGEN", name="general", members=[ALICE, bot.slack.bot_user_id])
    bot.slack.fail_next("chat.startStream", "not_allowed_token_type")  # the fallback path posts too
    llm.enqueue(Reply("See https://evil.example/?q=secret for details."))
    _, ts = await bot.mention(ALICE, "CGEN", "where?")
    msgs = await wait_answer(bot.slack, "CGEN", ts)
    assert msgs and all(m.unfurl_links is False and m.unfurl_media is False for m in msgs)
    posts = bot.slack.calls_to("chat.postMessage") + bot.slack.calls_to("chat.startStream")
    assert posts and all(str(c.params.get("unfurl_links")).lower() == "false" for c in posts)


async def test_a_slack_turn_is_audited_and_filed_under_the_users_id_in_temporal(
    bot: SlackBot, llm: FakeOpenAI, temporal_client: Client
) -> None:
    await alice(bot)
    _, ts = await bot.dm(ALICE, ALICE_DM, "audit me")
    await wait_answer(bot.slack, ALICE_DM, ts)
    user_id = bot.user_id("alice")
    admin = {"Authorization": f"Bearer {await bot.api.token('slack-auditor', roles=['OrgAdmin'])}"}
    resp = await bot.api.http.get(
        "/api/v1/admin/audit", params={"user_id": user_id, "event": "session.started"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    entries = resp.json()["events"]
    assert len(entries) == 1
    details = entries[0]["details"]
    assert details["channel"] == "slack" and details["slack_channel"] == ALICE_DM
    assert details["visibility"] == "dm"

    async def kinds() -> set[str]:
        found = set()
        async for wf in temporal_client.list_workflows(f'KeelUserId = "{user_id}"'):
            found.add(wf.workflow_type)
        return found

    for _ in range(50):  # visibility is eventually consistent
        if {"SlackTurnWorkflow", "ChatSessionWorkflow"} <= await kinds():
            break
        await asyncio.sleep(0.2)
    assert {"SlackTurnWorkflow", "ChatSessionWorkflow"} <= await kinds()
