"""Browser tests: Debian's Chromium driven by Playwright (async API) against a running Keel.

Chromium is ``/usr/bin/chromium`` (``KEEL_TEST_CHROMIUM`` overrides); ``.ci/run`` installs
it when missing and sets ``KEEL_WEB_TESTS_REQUIRED=1`` so a missing browser fails there
instead of skipping. ``playwright install`` is never used (it downloads a browser).

Waits are generous (the machine is shared and slow); nothing asserts on time.
Screenshots go to ``KEEL_WEB_SCREENSHOT_DIR`` when set (``make screenshots`` writes
docs/screenshots/), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    Request,
    ViewportSize,
    async_playwright,
    expect,
)
from temporalio.client import Client

from api.web import CONTENT_SECURITY_POLICY
from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.tools.conftest import counter, empty_allowlist  # noqa: F401 - fixtures for the tool tests

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KEEL_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
#: Generous: the machine is shared (waits only; nothing asserts on time).
WAIT_MS = 60_000
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}

if not Path(CHROMIUM).exists():
    if os.environ.get("KEEL_WEB_TESTS_REQUIRED"):
        raise RuntimeError(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Plain HTTP on loopback: the session cookies without ``Secure`` (docs/identity.md)."""
    return settings.model_copy(update={"session_cookie_secure": False})


@dataclass
class Web:
    """One signed-out browser context on a running Keel, recording what the page does."""

    api: RunningApi
    context: BrowserContext
    page: Page
    shots: Path
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.api.base_url

    def url(self, path: str) -> str:
        return self.base_url + path

    async def goto(self, path: str) -> None:
        response = await self.page.goto(self.url(path), wait_until="domcontentloaded")
        assert response is not None
        if urlsplit(response.url).path != "/sign-in" or path.startswith("/sign-in"):
            assert_csp(response.headers)

    async def sign_in(
        self, user_id: str, *, roles: str = "", groups: str = "", next_path: str = "/chat"
    ) -> None:
        await self.goto(f"/sign-in?next={next_path}")
        page = self.page
        await page.get_by_label("User id").fill(user_id)
        await page.get_by_label("Groups").fill(groups)
        await page.get_by_label("Roles").fill(roles)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(re.compile(re.escape(self.url(next_path)) + r"(\?.*)?$"), timeout=WAIT_MS)
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    def off_origin_requests(self) -> list[str]:
        origin = urlsplit(self.base_url)
        return [
            u
            for u in self.requests
            if not u.startswith("data:") and urlsplit(u)[:2] != (origin.scheme, origin.netloc)
        ]

    async def axe(self, name: str) -> None:
        """axe-core in the page (through the DevTools protocol, so the CSP needs no
        exception): no serious or critical violation."""
        await self.page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
        result: dict[str, Any] = await self.page.evaluate(
            "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
            " return {violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.html).slice(0, 3)}))}; }"
        )
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: {bad}"

    async def no_sideways_scroll(self, name: str) -> None:
        overflow = await self.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 1:  # name the elements that stick out, to find the culprit
            wide = await self.page.evaluate(
                "() => [...document.querySelectorAll('body *')]"
                ".filter(e => !e.closest('.table-wrap')"
                " && e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)"
                ".slice(0, 8).map(e => e.tagName + '.' + e.className + ' '"
                " + Math.round(e.getBoundingClientRect().right))"
            )
            raise AssertionError(f"{name} scrolls sideways by {overflow}px: {wide}")

    async def check_page(self, name: str) -> None:
        """axe, no sideways scrolling and a screenshot, at 1280 px and at 390 px."""
        for label, size in (("1280", DESKTOP), ("390", PHONE)):
            await self.page.set_viewport_size(size)
            await self.no_sideways_scroll(f"{name} at {label}px")
            await self.axe(f"{name} at {label}px")
            await self.page.screenshot(path=str(self.shots / f"{name}-{label}.png"), full_page=True)
        await self.page.set_viewport_size(DESKTOP)


def assert_csp(headers: dict[str, str]) -> None:
    assert headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, headers


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("KEEL_WEB_SCREENSHOT_DIR")
    path = Path(target) if target else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def open_web(browser: Browser, api: RunningApi, shots: Path) -> tuple[Web, BrowserContext]:
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    page = await context.new_page()
    web = Web(api=api, context=context, page=page, shots=shots)

    def on_request(request: Request) -> None:
        web.requests.append(request.url)

    async def on_dialog(dialog: Dialog) -> None:  # the UI opens none: one is a payload that ran
        web.dialogs.append(dialog.message)
        await dialog.dismiss()

    def on_page_error(error: Exception) -> None:
        web.page_errors.append(str(error))

    context.on("request", on_request)
    page.on("dialog", on_dialog)
    page.on("pageerror", on_page_error)
    return web, context


@pytest.fixture
async def keel(settings: Settings, temporal_client: Client) -> AsyncIterator[RunningApi]:
    async with running_platform(settings, temporal_client) as running:
        yield running


@pytest.fixture
async def web(browser: Browser, keel: RunningApi, shots: Path) -> AsyncIterator[Web]:
    web, context = await open_web(browser, keel, shots)
    try:
        yield web
    finally:
        await context.close()
