"""Settings in the browser: my usage and budget with the warning the API's ratio calls for,
and an API key made (shown once), used against the API, rotated and revoked."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.web.conftest import Web


async def _bearer_status(web: Web, key: str) -> int:
    """What the API answers a script holding ``key`` (a plain HTTP client, no cookies)."""
    resp = await web.api.http.get("/api/v1/knowledge-bases", headers={"Authorization": f"Bearer {key}"})
    return resp.status_code


async def test_usage_budget_warning_and_an_api_key_made_used_rotated_and_revoked(
    web: Web, llm: FakeOpenAI
) -> None:
    page = web.page
    user = "set-ada"
    # some usage today, then a daily budget that puts it past the 80 % warning
    mine = await web.api.auth(user)
    llm.enqueue(Reply("Hello there, this answer uses a few tokens."))
    turn = await web.api.http.post("/api/v1/chat", headers=mine, json={"message": "hello"}, timeout=90)
    assert turn.status_code == 200 and turn.json()["status"] == "completed", turn.text
    usage = (await web.api.http.get("/api/v1/usage", headers=mine)).json()
    used = usage["today"]["total_tokens"]
    assert used > 10, usage
    limit = max(used + 1, round(used / 0.85))
    admin = {"Authorization": f"Bearer {await web.api.token('set-admin', roles=['OrgAdmin'])}"}
    put = await web.api.http.put(
        f"/api/v1/admin/budgets/{user}", json={"daily_tokens": limit, "monthly_tokens": None}, headers=admin
    )
    assert put.status_code == 200, put.text

    await web.sign_in(user, next_path="/settings")
    today = page.get_by_role("region", name="Today", exact=True)
    await expect(today).to_contain_text(f"{used:,} tokens")
    await expect(today).to_contain_text(f"{limit:,} tokens")
    warning = today.get_by_role("alert")
    await expect(warning).to_contain_text(re.compile(r"You have used \d+% of your daily token budget"))
    await expect(warning).to_contain_text(f"({used:,} of {limit:,} tokens)")
    month = page.get_by_role("region", name="This month", exact=True)
    await expect(month).to_contain_text("BudgetUnlimited")  # monthly_tokens null: unlimited
    await expect(month.get_by_role("alert")).to_have_count(0)
    await expect(page.get_by_text("An administrator set your token budget.")).to_be_visible()

    # scopes offered are only what I may do myself (role User)
    form = page.get_by_role("form", name="Create an API key")
    await expect(form.get_by_role("checkbox")).to_have_count(3)
    await expect(form.get_by_role("checkbox", name=re.compile("manage_tools"))).to_have_count(0)
    await form.get_by_label("Name", exact=True).fill("nightly report")
    await form.get_by_role("checkbox", name=re.compile("^query_kb")).check()
    await form.get_by_role("button", name="Create API key").click()
    await expect(page.get_by_role("status")).to_have_text("Created the API key nightly report.")
    shown = page.get_by_label("API key", exact=True)
    key = await shown.input_value()
    assert key.startswith("keel_"), key
    # the key works against the API, as a script would use it
    assert await _bearer_status(web, key) == 200
    row = page.get_by_role("row").filter(has_text="nightly report")
    await expect(row).to_contain_text("query_kb")
    await expect(row).to_contain_text("active")
    await page.get_by_role("button", name="Done").click()
    await expect(shown).to_have_count(0)
    await web.check_page("settings")
    # shown once: never again, not even after a reload
    await page.reload()
    await expect(row).to_contain_text("active")
    assert key not in await page.content()

    # rotate, confirmed: the new secret is shown once, the old one stops working
    await row.get_by_role("button", name="Rotate nightly report").click()
    dialog = page.get_by_role("dialog", name="Rotate nightly report?")
    await expect(dialog).to_be_visible()
    await web.axe("the rotate confirmation")
    await dialog.get_by_role("button", name="Rotate", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Rotated nightly report.")
    rotated = await page.get_by_label("API key", exact=True).input_value()
    assert rotated.startswith("keel_") and rotated != key
    assert await _bearer_status(web, key) == 401
    assert await _bearer_status(web, rotated) == 200
    await page.get_by_role("button", name="Done").click()

    # revoke: cancelling keeps the key; confirming ends it, and the API refuses it
    await row.get_by_role("button", name="Revoke nightly report").click()
    dialog = page.get_by_role("dialog", name="Revoke nightly report?")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)
    assert await _bearer_status(web, rotated) == 200
    await row.get_by_role("button", name="Revoke nightly report").click()
    await dialog.get_by_role("button", name="Revoke", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Revoked nightly report.")
    await expect(row).to_contain_text("revoked")
    await expect(row.get_by_role("button")).to_have_count(0)
    assert await _bearer_status(web, rotated) == 401
    assert not web.page_errors and not web.dialogs
