"""Approvals in the browser: a tool call waits in the chat, is approved in the inbox with a
comment, and its result shows in the chat; a denied one shows as denied."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import expect

from infra.settings import Settings
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.web.conftest import Web


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # the counting MCP server listens on loopback, which tool URLs reach only when allowed
    return settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})


@pytest.mark.usefixtures("empty_allowlist")
async def test_approve_a_tool_call_and_see_the_result_in_the_chat(
    web: Web, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    admin = {"Authorization": f"Bearer {await web.api.token('appr-admin', roles=['OrgAdmin'])}"}
    resp = await web.api.http.post(
        "/api/v1/admin/tools",
        json={"name": "counter", "transport": "http", "url": counter.url, "requires_approval": True},
        headers=admin,
        timeout=90,
    )
    assert resp.status_code == 201, resp.text
    page = web.page
    await web.sign_in("appr-user")
    llm.enqueue(
        ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "deploy"}))]),
        Reply("Recorded the deploy."),
    )
    await page.get_by_label("Message", exact=True).fill("record a deploy")
    await page.get_by_role("button", name="Send").click()
    answer = page.get_by_role("log", name="Conversation").get_by_role("article", name="Assistant answer")
    tools = answer.get_by_role("region", name="Tool calls")
    await expect(tools).to_contain_text("counter__record_event awaiting approval")
    await tools.get_by_role("link", name="Review in Approvals").click()

    await page.wait_for_url(web.url("/approvals"))
    card = page.get_by_role("article", name="counter__record_event")
    await expect(card.get_by_label("Arguments of counter__record_event")).to_contain_text('"name": "deploy"')
    await web.check_page("approvals")
    await card.get_by_label("Comment (optional)").fill("fine, go ahead")
    await card.get_by_role("button", name="Approve").click()
    await expect(page.get_by_role("status")).to_have_text("Approved: counter__record_event.")
    await expect(page.get_by_text("Nothing is waiting for your decision.")).to_be_visible()

    await page.go_back()  # the chat follows the turn on to its end
    await expect(answer.last).to_contain_text("Recorded the deploy.")
    await expect(answer.last.get_by_role("region", name="Tool calls")).to_contain_text(
        "counter__record_event completed"
    )
    assert counter.events == ["deploy"]  # the tool really ran, once
    assert not web.page_errors and not web.dialogs
