"""The admin pages in the browser: an OrgAdmin allowlists the real counting MCP server and
sees its discovered tools, edits its rule, switches it off and removes it, then reads the
audit trail filtered (admin.tool_added), exports it and verifies the chain; org knowledge
bases, publishing, a failed ingestion retried, usage and a budget; each admin section shown
only to the permissions it needs, and a plain user sees none of it (the API refuses them)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from playwright.async_api import FilePayload, expect

from infra.settings import Settings
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.knowledge.test_documents_api import HANDBOOK
from tests.web.conftest import Web

SECTIONS = ["Tools", "Audit trail", "Usage and budgets", "Failed operations", "Knowledge bases"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # the counting MCP server listens on loopback, which tool URLs reach only when allowed
    return settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})


async def _section(web: Web, name: str) -> None:
    await web.page.get_by_role("navigation", name="Admin sections").get_by_role("link", name=name).click()
    await expect(web.page.get_by_role("heading", name=name, level=2)).to_be_visible()


@pytest.mark.usefixtures("empty_allowlist")
async def test_add_a_tool_see_its_tools_then_find_it_in_the_audit_trail(
    web: Web, counter: CounterMcpServer, tmp_path: Path
) -> None:
    page = web.page
    admin_id = "adm-root"
    await web.sign_in(admin_id, roles="OrgAdmin", next_path="/admin")
    sections = page.get_by_role("navigation", name="Admin sections")
    for name in SECTIONS:
        await expect(sections.get_by_role("link", name=name)).to_be_visible()
    await expect(sections.get_by_role("link", name="Tools")).to_have_attribute("aria-current", "page")

    form = page.get_by_role("form", name="Add a tool server")
    await form.get_by_label("Name", exact=True).fill("counter")
    await expect(form.get_by_label("Transport")).to_have_value("http")
    await form.get_by_label("URL").fill(counter.url)
    await form.get_by_label("Requires approval").check()
    await form.get_by_label("Approver group").fill("ops")
    await form.get_by_label("Allowed groups").fill("eng, ops")
    await form.get_by_role("button", name="Add tool server").click()
    await expect(page.get_by_role("status")).to_have_text(
        re.compile(r"^Added counter: \d+ tools discovered\.$")
    )
    card = page.get_by_role("article", name="counter")
    tools = card.get_by_role("table", name="Tools of counter")
    await expect(tools.get_by_role("row").filter(has_text="record_event")).to_be_visible()
    await expect(card).to_contain_text("every call needs approval")
    await expect(card).to_contain_text("eng, ops")
    await web.check_page("admin-tools")

    # edit its rule: no approval any more (the API holds the change)
    await card.get_by_text("Edit the rule").click()
    await card.get_by_label("Requires approval").uncheck()
    await card.get_by_role("button", name="Save rule of counter").click()
    await expect(page.get_by_role("status")).to_have_text("Saved the rule of counter.")
    await expect(card).to_contain_text("not needed")
    admin = {"Authorization": f"Bearer {await web.api.token(admin_id, roles=['OrgAdmin'])}"}
    [server] = (await web.api.http.get("/api/v1/admin/tools", headers=admin)).json()["tool_servers"]
    assert server["requires_approval"] is False and server["approver_group"] == "ops"
    # switch it off, then remove it (after confirming)
    await card.get_by_role("button", name="Switch off counter").click()
    await expect(card.get_by_text("disabled", exact=True)).to_be_visible()
    await card.get_by_role("button", name="Remove counter").click()
    await page.get_by_role("dialog", name="Remove counter?").get_by_role("button", name="Remove").click()
    await expect(page.get_by_text("No tool servers yet.")).to_be_visible()
    assert (await web.api.http.get("/api/v1/admin/tools", headers=admin)).json()["tool_servers"] == []

    # the audit trail, filtered to my admin.tool_added
    await _section(web, "Audit trail")
    await page.get_by_label("User", exact=True).fill(admin_id)
    await page.get_by_label("Event", exact=True).select_option("admin.tool_added")
    await page.get_by_role("button", name="Show events").click()
    events = page.get_by_role("table", name="Audit events, newest first")
    rows = events.locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("admin.tool_added")
    await expect(rows.first).to_contain_text(admin_id)
    await rows.first.locator("summary").click()
    await expect(rows.first).to_contain_text('"name": "counter"')
    # the chain verification
    verification = page.get_by_role("region", name="Chain verification")
    await verification.get_by_role("button", name="Verify the chain").click()
    await expect(verification).to_contain_text(re.compile(r"Chain intact: [\d,]+ rows verified"))
    await web.check_page("admin-audit")
    # the export: the same filter, as JSON lines
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Export as JSON lines").click()
    download = await download_info.value
    target = tmp_path / "audit.jsonl"
    await download.save_as(target)
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(e["event"], e["user_id"]) for e in lines] == [("admin.tool_added", admin_id)]
    # paging: all of my events, ten a page, older and back
    await page.get_by_label("Event", exact=True).select_option("")
    await page.get_by_label("Events per page").select_option("10")
    await page.get_by_role("button", name="Show events").click()
    await expect(events).to_contain_text("audit.exported")
    await expect(rows).to_have_count(10)
    first = [int(s) for s in await rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")]
    assert first == sorted(first, reverse=True)
    await expect(page.get_by_role("button", name="Newer events")).to_be_disabled()
    await page.get_by_role("button", name="Older events").click()
    await expect(rows.first).not_to_have_attribute("data-seq", str(first[0]))
    second = [int(s) for s in await rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")]
    assert second and max(second) < min(first)
    await page.get_by_role("button", name="Newer events").click()
    # back on the newest page (which has grown by the reads of the trail themselves)
    await expect(events.locator(f'tr[data-seq="{first[0]}"]')).to_have_count(1)
    await expect(page.get_by_role("button", name="Newer events")).to_be_disabled()
    assert not web.page_errors and not web.dialogs


async def test_knowledge_bases_publishing_failed_operations_usage_and_budgets(web: Web) -> None:
    page = web.page
    await web.sign_in("adm-kb", roles="OrgAdmin", next_path="/admin?section=knowledge")
    await expect(page.get_by_role("heading", name="Knowledge bases", level=2)).to_be_visible()
    form = page.get_by_role("form", name="Create an org knowledge base")
    await form.get_by_label("Name").fill("Policies web")
    await form.get_by_label("Description").fill("Company policies, for everyone")
    await form.get_by_role("button", name="Create knowledge base").click()
    await expect(page.get_by_role("status")).to_have_text("Created the knowledge base Policies web.")
    kb = page.get_by_role("article", name="Policies web")
    await kb.get_by_label("Publish to Policies web").set_input_files(
        [
            FilePayload(name="policy-handbook.txt", mimeType="text/plain", buffer=HANDBOOK.encode()),
            FilePayload(name="policy-empty.txt", mimeType="text/plain", buffer=b"  \n"),
        ]
    )
    uploads = kb.get_by_role("list", name="Uploads to Policies web")
    await expect(uploads.get_by_role("listitem")).to_have_count(2)
    await expect(uploads).to_contain_text("policy-empty.txt")
    await expect(page.get_by_role("status")).to_contain_text("Published to Policies web")
    await web.check_page("admin-knowledge")
    # everyone reads the org knowledge base
    reader = await web.api.auth("adm-kb-reader")
    kbs = (await web.api.http.get("/api/v1/knowledge-bases", headers=reader)).json()["knowledge_bases"]
    assert "Policies web" in [k["name"] for k in kbs]

    # the empty file fails and lands in failed operations; retry it
    admin = {"Authorization": f"Bearer {await web.api.token('adm-kb', roles=['OrgAdmin'])}"}
    org = next(k for k in kbs if k["name"] == "Policies web")
    docs = (await web.api.http.get(f"/api/v1/knowledge-bases/{org['id']}/documents", headers=admin)).json()
    empty_id = next(d["id"] for d in docs["documents"] if d["filename"] == "policy-empty.txt")
    await _section(web, "Failed operations")
    failed = page.get_by_role("row").filter(has_text=empty_id)
    for _ in range(30):  # the ingestion fails in the background: reload until it is listed
        settled = page.locator("tr[data-op]").or_(page.get_by_text("No open failed operations."))
        await settled.first.wait_for()
        if await failed.count():
            break
        await asyncio.sleep(1)
        await page.reload()
    await expect(failed).to_contain_text("document_empty")
    await web.check_page("admin-failed")
    await failed.get_by_role("button", name=f"Retry ingest {empty_id}").click()
    await expect(page.get_by_role("status")).to_have_text(f"Retrying ingest {empty_id}.")
    # (still empty, the re-run fails again and opens a new entry; the old one is retried)
    await page.get_by_label("Status").select_option("retried")
    await expect(failed).to_contain_text("retried")

    # usage per user, and a user's budget set and cleared
    await _section(web, "Usage and budgets")
    await expect(page.get_by_role("region", name="Usage per user")).to_contain_text("tokens")
    budgets = page.get_by_role("region", name="Budgets", exact=True)
    await budgets.get_by_label("User id").fill("adm-budget-user")
    await budgets.get_by_role("button", name="Look up budget").click()
    await expect(budgets).to_contain_text("the defaults")
    await budgets.get_by_label("Daily tokens").fill("5000")
    await budgets.get_by_label("Monthly tokens").fill("")
    await budgets.get_by_role("button", name="Save budget of adm-budget-user").click()
    await expect(page.get_by_role("status")).to_have_text("Saved the budget of adm-budget-user.")
    await expect(budgets).to_contain_text("set by adm-kb")
    budget = (await web.api.http.get("/api/v1/admin/budgets/adm-budget-user", headers=admin)).json()
    assert (budget["daily_tokens"], budget["monthly_tokens"], budget["source"]) == (5000, None, "override")
    await web.check_page("admin-usage")
    await budgets.get_by_role("button", name="Clear budget of adm-budget-user").click()
    await (
        page.get_by_role("dialog", name="Clear the budget of adm-budget-user?")
        .get_by_role("button", name="Clear budget")
        .click()
    )
    await expect(page.get_by_role("status")).to_have_text(
        "Cleared the budget of adm-budget-user: the defaults apply."
    )
    budget = (await web.api.http.get("/api/v1/admin/budgets/adm-budget-user", headers=admin)).json()
    assert budget["source"] == "default"
    assert not web.page_errors and not web.dialogs


async def test_each_section_only_for_its_permission_and_none_for_a_user(web: Web) -> None:
    page = web.page
    # a DeptAdmin holds view_audit_logs only: the audit trail and usage, nothing else
    await web.sign_in("adm-dept", roles="DeptAdmin", next_path="/admin")
    sections = page.get_by_role("navigation", name="Admin sections")
    await expect(sections.get_by_role("link")).to_have_text(["Audit trail", "Usage and budgets"])
    await expect(page.get_by_role("heading", name="Audit trail", level=2)).to_be_visible()
    await web.goto("/admin?section=tools")  # not theirs: the first section they may see instead
    await expect(page.get_by_role("heading", name="Audit trail", level=2)).to_be_visible()
    await expect(page.get_by_role("form", name="Add a tool server")).to_have_count(0)
    await _section(web, "Usage and budgets")
    await expect(page.get_by_role("region", name="Usage per user")).to_be_visible()
    await expect(page.get_by_role("region", name="Budgets", exact=True)).to_have_count(0)
    status = await page.evaluate("async () => (await fetch('/api/v1/admin/tools')).status")
    assert status == 403
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(web.url("/sign-in"))

    # a plain user: no Admin link, no admin content, and the API refuses every admin route
    await web.sign_in("adm-plain")
    await expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")).to_have_count(
        0
    )
    await web.goto("/admin")
    await expect(page.get_by_text("You do not have access to the admin pages.")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Admin sections")).to_have_count(0)
    await expect(page.get_by_role("form")).to_have_count(0)
    statuses = await page.evaluate(
        """async () => {
          const csrf = document.cookie.split('; ').find((c) => c.startsWith('keel_csrf=')).split('=')[1];
          const get = (p) => fetch(p).then((r) => r.status);
          const send = (m, p, body) => fetch(p, {method: m, headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': decodeURIComponent(csrf)}, body: JSON.stringify(body)}).then((r) => r.status);
          return [
            await get('/api/v1/admin/tools'), await get('/api/v1/admin/audit'),
            await get('/api/v1/admin/audit/verify'), await get('/api/v1/admin/audit/export'),
            await get('/api/v1/admin/usage'), await get('/api/v1/admin/budgets/adm-plain'),
            await get('/api/v1/admin/failed-operations'),
            await send('POST', '/api/v1/admin/tools', {name: 'x', transport: 'http', url: 'http://127.0.0.1:1/'}),
            await send('PUT', '/api/v1/admin/budgets/adm-plain', {daily_tokens: null, monthly_tokens: null}),
            await send('POST', '/api/v1/admin/knowledge-bases', {name: 'mine'}),
          ];
        }"""
    )
    assert statuses == [403] * 10, statuses
    assert not web.page_errors and not web.dialogs
