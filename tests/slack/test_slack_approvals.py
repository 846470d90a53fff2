"""Approve / Deny buttons: the approver decides by button, the message is rewritten to who
decided; the wrong person's click, or a click on a decided or expired approval, changes
nothing and gets an ephemeral notice; a decision through the API rewrites the Slack
message too. Real MCP server (the counting server), real Temporal/Postgres/Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.fakes.slack_api import FakeSlack, Message
from tests.slack.conftest import SlackBot
from tests.slack.test_slack_turns import wait_answer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_allowlist")]

ALICE, ALICE_DM = "UALICE", "DALICE"
OPS, OPS_DM = "UOPS", "DOPS"
EVE = "UEVE"


@pytest.fixture
async def tool_bot(
    slack_settings: Settings, slack: FakeSlack, temporal_client: Client, counter: CounterMcpServer
) -> Any:
    settings = slack_settings.model_copy(
        update={"tool_allowed_hosts": ["127.0.0.1"], "tool_approval_timeout_s": 60}
    )
    async with running_platform(settings, temporal_client) as running:
        yield SlackBot(api=running, slack=slack, settings=settings)


async def _add_tool(bot: SlackBot, counter: CounterMcpServer, **rule: Any) -> None:
    admin = {"Authorization": f"Bearer {await bot.api.token('slack-admin', roles=['OrgAdmin'])}"}
    resp = await bot.api.http.post(
        "/api/v1/admin/tools",
        json={"name": "ops", "transport": "http", "url": counter.url, "requires_approval": True, **rule},
        headers=admin,
        timeout=90,
    )
    assert resp.status_code == 201, resp.text


def _buttons(msg: Message) -> list[dict[str, Any]]:
    return [e for b in msg.blocks or [] if b.get("type") == "actions" for e in b.get("elements", [])]


def _approval_message(slack: FakeSlack, channel: str) -> Message | None:
    return next((m for m in slack.messages(channel) if _buttons(m)), None)


async def _people(bot: SlackBot) -> None:
    bot.slack.add_user(ALICE, email="alice@example.com", real_name="Alice")
    bot.slack.add_channel(ALICE_DM, is_im=True, user=ALICE)
    bot.slack.add_user(OPS, email="ops@example.com", real_name="Olga Ops")
    bot.slack.add_channel(OPS_DM, is_im=True, user=OPS)
    bot.slack.add_user(EVE, email="eve@example.com", real_name="Eve")
    await bot.keel_user("alice", "alice@example.com")
    await bot.keel_user("olga", "ops@example.com", groups=["ops-approvers"])
    await bot.keel_user("eve", "eve@example.com")


async def test_the_requester_approves_by_button_and_the_message_says_so(
    tool_bot: SlackBot, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    bot = tool_bot
    await _people(bot)
    await _add_tool(bot, counter)
    llm.enqueue(
        ToolCalls([ToolCall("ops__echo", json.dumps({"text": "restart web-1"}))]), Reply("Done: restarted.")
    )
    _, ts = await bot.dm(ALICE, ALICE_DM, "restart web-1 please")
    await bot.slack.wait_for_async(lambda s: _approval_message(s, ALICE_DM) is not None)
    request = _approval_message(bot.slack, ALICE_DM)
    assert request is not None
    assert "restart web-1" in json.dumps(request.blocks), "the frozen arguments are shown"
    approve = next(b for b in _buttons(request) if b["action_id"] == "keel_approve")
    assert approve.get("confirm"), "the button asks to confirm"
    assert not counter.call_log, "nothing ran before the decision"

    # Someone else clicking (a Keel user, not the requester, no approver group) changes nothing.
    resp = await bot.click(EVE, ALICE_DM, request.ts, "keel_approve", approve["value"])
    assert resp.status_code == 200
    await bot.slack.wait_for_async(lambda s: len(s.responses) == 1)
    assert "may not decide" in bot.slack.responses[0].body["text"]
    assert bot.slack.responses[0].body["response_type"] == "ephemeral"
    assert not counter.call_log

    resp = await bot.click(ALICE, ALICE_DM, request.ts, "keel_approve", approve["value"])
    assert resp.status_code == 200
    await wait_answer(bot.slack, ALICE_DM, ts)
    assert len(counter.call_log) == 1
    rewritten = next(m for m in bot.slack.messages(ALICE_DM, thread_ts=ts) if m.ts == request.ts)
    assert not _buttons(rewritten) and f"Approved by <@{ALICE}>" in json.dumps(rewritten.blocks)

    # A second click on the decided approval: an ephemeral notice, nothing more.
    await bot.click(ALICE, ALICE_DM, request.ts, "keel_deny", approve["value"])
    await bot.slack.wait_for_async(lambda s: len(s.responses) == 2)
    assert "already approved" in bot.slack.responses[-1].body["text"]
    assert len(counter.call_log) == 1


async def test_an_approver_group_member_decides_in_a_dm_and_the_requester_cannot(
    tool_bot: SlackBot, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    bot = tool_bot
    await _people(bot)
    await _add_tool(bot, counter, approver_group="ops-approvers")
    llm.enqueue(
        ToolCalls([ToolCall("ops__echo", json.dumps({"text": "drop cache"}))]), Reply("Cache dropped.")
    )
    _, ts = await bot.dm(ALICE, ALICE_DM, "drop the cache")
    await bot.slack.wait_for_async(lambda s: _approval_message(s, OPS_DM) is not None)
    request = _approval_message(bot.slack, OPS_DM)
    assert request is not None
    assert _approval_message(bot.slack, ALICE_DM) is None, "the requester gets no buttons"
    value = _buttons(request)[0]["value"]

    # The requester forging a click on the approver's message is refused.
    await bot.click(ALICE, OPS_DM, request.ts, "keel_approve", value)
    await bot.slack.wait_for_async(lambda s: len(s.responses) == 1)
    refusal = bot.slack.responses[0].body["text"]
    assert "cannot decide" in refusal or "may not" in refusal
    assert not counter.call_log

    await bot.click(OPS, OPS_DM, request.ts, "keel_deny", value)
    await wait_answer(bot.slack, ALICE_DM, ts)
    assert not counter.call_log, "a denied tool never runs"
    rewritten = next(m for m in bot.slack.messages(OPS_DM) if m.ts == request.ts)
    assert f"Denied by <@{OPS}>" in json.dumps(rewritten.blocks) and not _buttons(rewritten)


async def test_a_decision_through_the_api_rewrites_the_slack_message(
    tool_bot: SlackBot, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    bot = tool_bot
    await _people(bot)
    await _add_tool(bot, counter)
    llm.enqueue(ToolCalls([ToolCall("ops__echo", json.dumps({"text": "scale up"}))]), Reply("Scaled."))
    _, ts = await bot.dm(ALICE, ALICE_DM, "scale up")
    await bot.slack.wait_for_async(lambda s: _approval_message(s, ALICE_DM) is not None)
    request = _approval_message(bot.slack, ALICE_DM)
    assert request is not None
    headers = {"Authorization": f"Bearer {await bot.keel_user('alice', 'alice@example.com')}"}
    pending = (await bot.api.http.get("/api/v1/approvals", headers=headers)).json()["approvals"]
    resp = await bot.api.http.post(
        f"/api/v1/approvals/{pending[0]['id']}", json={"decision": "approve"}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    await wait_answer(bot.slack, ALICE_DM, ts)
    rewritten = next(m for m in bot.slack.messages(ALICE_DM, thread_ts=ts) if m.ts == request.ts)
    assert "Approved by" in json.dumps(rewritten.blocks) and not _buttons(rewritten)
    # A click now, on the decided approval, changes nothing.
    await bot.click(ALICE, ALICE_DM, request.ts, "keel_deny", pending[0]["id"])
    await bot.slack.wait_for_async(lambda s: len(s.responses) == 1)
    assert "already approved" in bot.slack.responses[0].body["text"]
    assert len(counter.call_log) == 1


async def test_a_click_on_an_expired_approval_changes_nothing(
    slack_settings: Settings,
    slack: FakeSlack,
    temporal_client: Client,
    llm: FakeOpenAI,
    counter: CounterMcpServer,
) -> None:
    settings = slack_settings.model_copy(
        update={"tool_allowed_hosts": ["127.0.0.1"], "tool_approval_timeout_s": 2}
    )
    async with running_platform(settings, temporal_client) as running:
        bot = SlackBot(api=running, slack=slack, settings=settings)
        await _people(bot)
        await _add_tool(bot, counter)
        llm.enqueue(ToolCalls([ToolCall("ops__echo", json.dumps({"text": "later"}))]), Reply("It expired."))
        _, ts = await bot.dm(ALICE, ALICE_DM, "do it later")
        await slack.wait_for_async(lambda s: _approval_message(s, ALICE_DM) is not None)
        request = _approval_message(slack, ALICE_DM)
        assert request is not None
        await wait_answer(slack, ALICE_DM, ts)  # the approval expired; the turn finished without it
        rewritten = next(m for m in slack.messages(ALICE_DM, thread_ts=ts) if m.ts == request.ts)
        assert "Expired" in json.dumps(rewritten.blocks)
        await bot.click(ALICE, ALICE_DM, request.ts, "keel_approve", _buttons(request)[0]["value"])
        await slack.wait_for_async(lambda s: len(s.responses) == 1)
        assert "already expired" in slack.responses[0].body["text"]
        assert not counter.call_log
