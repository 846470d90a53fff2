"""The web UI's foundation: pages and their CSP, dev sign-in and sign-out, navigation by
permission, accessibility (axe) and layout at 1280 and 390 px."""

from __future__ import annotations

import httpx
from playwright.async_api import expect

from api.web.pages import PAGES
from tests.conftest import RunningApi
from tests.web.conftest import Web, assert_csp


async def test_every_page_and_asset_has_the_csp(keel: RunningApi) -> None:
    for path in [*PAGES, "/web-assets/app.css", "/web-assets/js/app.js", "/web-assets/vendor/marked.esm.js"]:
        resp = await keel.http.get(path)
        assert resp.status_code == 200, (path, resp.text)
        assert_csp(dict(resp.headers))
        assert resp.headers["x-content-type-options"] == "nosniff"
    home = await keel.http.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/chat"
    # only the named vendored files are served, never the rest of node_modules
    assert (await keel.http.get("/web-assets/vendor/package.json")).status_code == 404
    assert (await keel.http.get("/web-assets/vendor/..%2Fpackage.json")).status_code == 404
    # the pages hold no inline script or style
    page = (await keel.http.get("/chat")).text
    assert "<script>" not in page and "style=" not in page and "<style" not in page


async def test_dev_login_sets_the_session_cookies_and_is_audited(keel: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=keel.base_url) as client:
        resp = await client.post("/api/v1/auth/dev-login", json={"user_id": "web-dev", "roles": ["OrgAdmin"]})
        assert resp.status_code == 204, resp.text
        cookies = resp.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("keel_session="))
        assert "HttpOnly" in session and "SameSite=lax" in session
        csrf = client.cookies["keel_csrf"]
        me = (await client.get("/api/v1/auth/me")).json()
        assert me["user_id"] == "web-dev" and me["auth_method"] == "session" and "OrgAdmin" in me["roles"]
        # a state-changing request needs the CSRF header
        refused = await client.post("/api/v1/auth/logout")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        audit = await client.get("/api/v1/admin/audit", params={"event": "auth.login", "user_id": "web-dev"})
        assert audit.status_code == 200, audit.text
        events = audit.json()["events"]
        assert events and events[0]["details"]["method"] == "dev"
        assert (await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
        assert (await client.get("/api/v1/auth/me")).status_code == 401
    # a form post (not JSON) is refused: no login CSRF from another site
    form = await keel.http.post("/api/v1/auth/dev-login", data={"user_id": "x"})
    assert form.status_code == 422


async def test_dev_login_is_refused_outside_dev_mode(keel: RunningApi) -> None:
    keel.settings.__dict__["auth_mode"] = "oidc"  # the running app reads this very object
    try:
        resp = await keel.http.post("/api/v1/auth/dev-login", json={"user_id": "x"})
    finally:
        keel.settings.__dict__["auth_mode"] = "dev"
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "dev_auth_disabled"


async def test_sign_in_navigate_and_sign_out(web: Web) -> None:
    page = web.page
    await web.goto("/documents")
    await page.wait_for_url(web.url("/sign-in?next=%2Fdocuments"))
    await web.check_page("sign-in")
    await web.sign_in("ada", next_path="/documents")
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Chat", "Documents", "Approvals", "Settings"):
        await expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    await expect(nav.get_by_role("link", name="Admin")).to_have_count(0)
    await nav.get_by_role("link", name="Chat", exact=True).click()
    await page.wait_for_url(web.url("/chat"))
    await expect(nav.get_by_role("link", name="Chat", exact=True)).to_have_attribute("aria-current", "page")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(web.url("/sign-in"))
    await web.goto("/settings")
    await page.wait_for_url(web.url("/sign-in?next=%2Fsettings"))
    assert not web.page_errors and not web.dialogs


async def test_admins_see_admin_and_users_never_do(web: Web) -> None:
    page = web.page
    await web.sign_in("root", roles="OrgAdmin")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Admin")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(web.url("/sign-in"))

    await web.sign_in("bob")
    await expect(nav.get_by_role("link", name="Admin")).to_have_count(0)
    await web.goto("/admin")
    await expect(page.get_by_text("You do not have access to the admin pages.")).to_be_visible()
    # and the API refuses the admin routes to this session whatever the page shows
    status = await page.evaluate("async () => (await fetch('/api/v1/admin/tools')).status")
    assert status == 403
    status = await page.evaluate("async () => (await fetch('/api/v1/admin/audit')).status")
    assert status == 403
