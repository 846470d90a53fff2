"""``/keel``: help in the acknowledgement; ``ask`` posts the question and answers in its
thread, one session per person and channel until ``new``; a reply in that thread
continues the command session; ``kb`` and ``usage`` answer through the command's
``response_url``; someone Keel does not know is told to sign in. Real Temporal,
Postgres, Redis; Slack's Web API and the model are the local fakes."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from infra.db.knowledge_repo import personal_kb_id
from slack_app.handlers import HELP
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack, Message
from tests.slack.conftest import SlackBot
from tests.slack.test_slack_turns import answers, shown, wait_answer

pytestmark = pytest.mark.slow

ALICE, ALICE_DM = "UALICE", "DALICE"
BOB = "UBOB"
GENERAL = "CGEN"


def email(bot: SlackBot, name: str) -> str:
    """Unique per test: the user directory outlives a test (tests/slack/test_slack_files.py)."""
    return f"{name}-{bot.suffix}@example.com"


async def alice(bot: SlackBot) -> dict[str, str]:
    bot.slack.add_user(ALICE, email=email(bot, "alice"), real_name="Alice")
    bot.slack.add_channel(ALICE_DM, is_im=True, user=ALICE)
    bot.slack.add_channel(GENERAL, name="general", members=[ALICE, bot.slack.bot_user_id])
    return {"Authorization": f"Bearer {await bot.keel_user('alice', email(bot, 'alice'))}"}


def ack_of(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body, dict)
    return body


def questions(slack: FakeSlack, channel: str) -> list[Message]:
    """The bot's top-level copies of ``/keel ask`` questions, oldest first."""
    return [
        m
        for m in slack.messages(channel)
        if m.user == slack.bot_user_id and m.thread_ts is None and "asked:" in m.text
    ]


async def ask(bot: SlackBot, channel: str, text: str, *, user: str = ALICE) -> Message:
    """``/keel ask text``: acknowledged at once, the question posted, answered in its thread."""
    before = len(questions(bot.slack, channel))
    ack = ack_of(await bot.command(user, channel, f"ask {text}"))
    assert ack["response_type"] == "ephemeral" and "thread" in ack["text"], ack
    await bot.slack.wait_for_async(lambda s: len(questions(s, channel)) == before + 1)
    q = questions(bot.slack, channel)[-1]
    assert q.text == f"<@{user}> asked: {text}"
    await wait_answer(bot.slack, channel, q.ts)
    return q


async def response_texts(bot: SlackBot, count: int) -> list[str]:
    """The first ``count`` posts to the commands' ``response_url``s (all ephemeral)."""
    await bot.slack.wait_for_async(lambda s: len(s.responses) >= count, timeout_s=30)
    posts = bot.slack.responses
    assert all(p.body["response_type"] == "ephemeral" for p in posts), posts
    return [str(p.body["text"]) for p in posts]


async def test_help_and_unknown_verbs_are_answered_in_the_acknowledgement(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await alice(bot)
    for text in ("help", "", "frobnicate the widgets", "ask", "ASK   "):
        ack = ack_of(await bot.command(ALICE, GENERAL, text))
        assert ack == {"response_type": "ephemeral", "text": HELP}, (text, ack)
    assert "/keel ask" in HELP and "/keel kb" in HELP
    await asyncio.sleep(1.0)  # time for anything started to show
    assert bot.slack.responses == [] and llm.request_count == 0
    assert not [c for c in bot.slack.calls if c.method != "auth.test"], bot.slack.summary()


async def test_keel_ask_keeps_one_session_per_channel_until_keel_new(bot: SlackBot, llm: FakeOpenAI) -> None:
    await alice(bot)
    llm.enqueue(
        Reply("Lisbon is the capital of Portugal."),
        Reply("About half a million people."),
        Reply("Hello! Fresh start."),
        Reply("Its river is the Douro."),
    )
    first = await ask(bot, GENERAL, "What is the capital of Portugal?")
    [answer] = answers(bot.slack, GENERAL, first.ts)
    assert shown(answer) == "Lisbon is the capital of Portugal."
    assert "everyone in the organisation" in json.dumps(answer.blocks), "#general is a public channel"

    # A second /keel ask in the channel continues the same session: a new thread, the history.
    second = await ask(bot, GENERAL, "How many people live there?")
    assert second.ts != first.ts
    history = json.dumps(llm.requests[1]["messages"])
    assert "What is the capital of Portugal?" in history and "Lisbon is the capital of Portugal." in history

    # /keel new: the next /keel ask starts afresh.
    ack = ack_of(await bot.command(ALICE, GENERAL, "new"))
    assert ack["response_type"] == "ephemeral"
    [started] = await response_texts(bot, 1)
    assert "new conversation" in started
    await ask(bot, GENERAL, "Hi there")
    fresh = json.dumps(llm.requests[2]["messages"])
    assert "Hi there" in fresh
    assert "Portugal" not in fresh and "Lisbon" not in fresh and "half a million" not in fresh

    # An @mention in the first /keel ask thread continues that (older) command session.
    _, ts = await bot.mention(ALICE, GENERAL, "And its river?", thread_ts=first.ts)
    await bot.slack.wait_for_async(lambda s: len(answers(s, GENERAL, first.ts)) == 2, timeout_s=40)
    await wait_answer(bot.slack, GENERAL, first.ts)
    assert llm.request_count == 4
    followup = json.dumps(llm.requests[3]["messages"])
    assert "Lisbon is the capital of Portugal." in followup and "half a million" in followup
    assert "Hi there" not in followup
    assert shown(answers(bot.slack, GENERAL, first.ts)[-1]) == "Its river is the Douro."
    assert ts not in {m.thread_ts for m in bot.slack.messages(GENERAL) if m.user == bot.slack.bot_user_id}


async def test_a_dm_reply_in_a_keel_ask_thread_continues_the_command_session(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await alice(bot)
    llm.enqueue(Reply("The Heron project launches in May."), Reply("From the north harbour."))
    q = await ask(bot, ALICE_DM, "When does Heron launch?")
    [answer] = answers(bot.slack, ALICE_DM, q.ts)
    assert "your own access" in json.dumps(answer.blocks), "a /keel ask in a DM uses the asker's access"

    await bot.dm(ALICE, ALICE_DM, "From where?", thread_ts=q.ts)
    await bot.slack.wait_for_async(lambda s: len(answers(s, ALICE_DM, q.ts)) == 2, timeout_s=40)
    await wait_answer(bot.slack, ALICE_DM, q.ts)
    history = json.dumps(llm.requests[1]["messages"])
    assert "When does Heron launch?" in history and "The Heron project launches in May." in history


async def test_keel_kb_lists_the_personal_and_org_knowledge_bases(bot: SlackBot) -> None:
    await alice(bot)  # signed in, never opened a knowledge base
    admin = {"Authorization": f"Bearer {await bot.api.token('slack-kb-admin', roles=['OrgAdmin'])}"}
    created = await bot.api.http.post(
        "/api/v1/admin/knowledge-bases", json={"name": "Company Handbook"}, headers=admin
    )
    assert created.status_code == 201, created.text
    org_kb = created.json()["id"]
    # Another admin's personal knowledge base exists too; it is not Alice's to read.
    await bot.api.http.get("/api/v1/knowledge-bases", headers=admin)

    ack = ack_of(await bot.command(ALICE, GENERAL, "kb"))
    assert ack["response_type"] == "ephemeral"
    [text] = await response_texts(bot, 1)
    lines = text.splitlines()
    assert lines[0] == "*Knowledge bases you can read*", text
    mine = personal_kb_id(bot.user_id("alice"))
    assert any("Personal (yours)" in line and f"`{mine}`" in line for line in lines), text
    assert any("Company Handbook" in line and f"`{org_kb}`" in line for line in lines), text
    assert personal_kb_id("slack-kb-admin") not in text and "shared with you" not in text


async def test_keel_usage_shows_the_tokens_of_a_turn(bot: SlackBot, llm: FakeOpenAI) -> None:
    headers = await alice(bot)
    _, ts = await bot.dm(ALICE, ALICE_DM, "Tell me something")
    await wait_answer(bot.slack, ALICE_DM, ts)

    ack_of(await bot.command(ALICE, GENERAL, "usage"))
    [text] = await response_texts(bot, 1)
    today = re.search(r"Today: ([\d,]+) of", text)
    month = re.search(r"This month: ([\d,]+) of", text)
    assert today and month, text
    used_today, used_month = (int(m.group(1).replace(",", "")) for m in (today, month))
    assert used_today > 0 and used_month >= used_today, text
    # The same figures as the API's own usage.
    usage = (await bot.api.http.get("/api/v1/usage", headers=headers)).json()
    assert (used_today, used_month) == (usage["today"]["total_tokens"], usage["this_month"]["total_tokens"])


async def test_a_command_from_someone_keel_does_not_know_is_told_to_sign_in(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    bot.slack.add_user(BOB, email=email(bot, "bob"), real_name="Bob")  # never signed in to Keel
    bot.slack.add_channel(GENERAL, name="general", members=[BOB, bot.slack.bot_user_id])
    sign_in = "Sign in to Keel once at https://keel.example.test/"
    for verb in ("usage", "kb", "new"):
        ack_of(await bot.command(BOB, GENERAL, verb))
    texts = await response_texts(bot, 3)
    assert len(texts) == 3 and all(sign_in in t for t in texts), texts

    ack_of(await bot.command(BOB, GENERAL, "ask what is our revenue?"))
    texts = await response_texts(bot, 4)  # /keel ask's refusal goes to its response_url too
    assert sign_in in texts[3]
    await asyncio.sleep(0.5)
    assert questions(bot.slack, GENERAL) == [], "nothing is posted in the channel for a stranger"
    assert llm.request_count == 0


async def test_keel_ask_where_the_bot_is_not_a_member_says_so_through_the_response_url(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await alice(bot)
    bot.slack.add_channel("CNOBOT", name="no-bot", members=[ALICE])  # the bot was never invited
    resp = await bot.command(ALICE, "CNOBOT", "ask what is new?")
    assert "Thinking" in ack_of(resp)["text"]
    texts = await response_texts(bot, 1)
    assert "not a member of this channel" in texts[0] and "Invite me" in texts[0]
    assert llm.request_count == 0, "nothing reached the model"
