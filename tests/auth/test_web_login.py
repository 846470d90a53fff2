"""Web sign-in like a browser: API → IdP authorize → callback → session cookies + CSRF.

Redirects and the IdP's form post are followed by hand so each hop can be
checked, and cookies are sent by hand (the test's API is plain HTTP, where a
client keeps ``Secure`` cookies to itself). The settings here turn secure
cookies off, which also selects ``response_mode=query``; the secure-cookie test
runs the production shape (``Secure`` cookies, ``response_mode=form_post``).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from http.cookiejar import DefaultCookiePolicy
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from tests.auth.conftest import ADMIN_GROUP
from tests.conftest import RunningApi
from tests.fakes.oidc_issuer import FakeOidcIssuer

ME = "/api/v1/auth/me"


@dataclass
class SetCookie:
    value: str
    attributes: dict[str, str]


def _set_cookies(response: httpx.Response) -> dict[str, SetCookie]:
    found: dict[str, SetCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attrs = {k.lower(): str(v) for k, v in morsel.items() if v}
            found[name] = SetCookie(morsel.value, attrs)
    return found


def _raw_attributes(response: httpx.Response, name: str) -> set[str]:
    """The lower-cased attribute tokens of ``name``'s Set-Cookie header (``httponly``, ``secure``, …)."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    raise AssertionError(f"no Set-Cookie for {name}")


@pytest.fixture
async def browser(idp: FakeOidcIssuer) -> AsyncIterator[httpx.AsyncClient]:
    """Talks to the API (http) and the IdP (https, private CA); follows and keeps nothing by itself."""
    context = ssl.create_default_context(cafile=str(idp.ca_path))
    async with httpx.AsyncClient(verify=context, follow_redirects=False, timeout=30) as client:
        client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # keep no cookie
        yield client


@dataclass
class Callback:
    """The IdP's answer on its way back to the API, and this browser's sign-in binding cookie."""

    method: str  # GET (response_mode=query) or POST (form_post)
    url: str
    params: dict[str, str]
    binding: str
    login: httpx.Response  # the API's answer to /login


async def _authorize(api: RunningApi, browser: httpx.AsyncClient, next_path: str | None = None) -> Callback:
    """Start a sign-in and let the IdP consent: what the IdP sends the browser back with."""
    params = {"next": next_path} if next_path is not None else {}
    start = await browser.get(f"{api.base_url}/api/v1/auth/login", params=params)
    assert start.status_code == 302, start.text
    binding = _set_cookies(start)["keel_login"].value
    to_idp = start.headers["location"]
    assert to_idp.startswith("https://127.0.0.1:")
    idp_reply = await browser.get(to_idp)
    assert not browser.cookies  # every cookie in these tests is sent by hand
    callback_url = f"{api.base_url}/api/v1/auth/callback"
    if idp_reply.status_code == 302:  # response_mode=query
        parts = urlsplit(idp_reply.headers["location"])
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == callback_url
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        return Callback("GET", callback_url, query, binding, start)
    assert idp_reply.status_code == 200, idp_reply.text  # response_mode=form_post
    action = unescape(re.search(r'action="([^"]+)"', idp_reply.text).group(1))  # type: ignore[union-attr]
    assert action == callback_url
    fields = {
        unescape(k): unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', idp_reply.text)
    }
    return Callback("POST", action, fields, binding, start)


async def _deliver(
    browser: httpx.AsyncClient,
    callback: Callback,
    *,
    params: dict[str, str] | None = None,
    binding: str | None = "",
) -> httpx.Response:
    """Send the IdP's answer to the API, with this browser's binding cookie (or ``binding``)."""
    cookie = callback.binding if binding == "" else binding
    headers = {"Cookie": f"keel_login={cookie}"} if cookie else {}
    fields = callback.params if params is None else params
    if callback.method == "GET":
        return await browser.get(callback.url, params=fields, headers=headers)
    return await browser.post(callback.url, data=fields, headers=headers)


async def _sign_in(
    api: RunningApi, browser: httpx.AsyncClient, next_path: str | None = None
) -> httpx.Response:
    return await _deliver(browser, await _authorize(api, browser, next_path))


def _cookie_header(session: str, csrf: str | None = None) -> dict[str, str]:
    cookie = f"keel_session={session}" + (f"; keel_csrf={csrf}" if csrf else "")
    return {"Cookie": cookie}


async def test_full_browser_flow(api: RunningApi, idp: FakeOidcIssuer, browser: httpx.AsyncClient) -> None:
    idp.user.groups = [ADMIN_GROUP]

    # 1. login → IdP with PKCE (S256), state and nonce
    callback = await _authorize(api, browser, "/chat?x=1")
    query = parse_qs(urlsplit(callback.login.headers["location"]).query)
    assert query["client_id"] == [idp.client_id]
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == [f"{api.base_url}/api/v1/auth/callback"]
    assert "openid" in query["scope"][0].split()
    assert query["response_mode"] == ["query"]  # plain-HTTP settings (secure cookies off)
    assert callback.method == "GET" and callback.params["code"]
    login_cookie = _raw_attributes(callback.login, "keel_login")
    assert {"httponly", "path", "max-age"} <= login_cookie and "secure" not in login_cookie
    assert _set_cookies(callback.login)["keel_login"].attributes["path"] == "/api/v1/auth/callback"
    assert _set_cookies(callback.login)["keel_login"].attributes["samesite"].lower() == "lax"

    # 2. IdP → callback → cookies and a redirect to `next`
    done = await _deliver(browser, callback)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/chat?x=1"
    cookies = _set_cookies(done)
    session, csrf = cookies["keel_session"], cookies["keel_csrf"]
    assert len(session.value) >= 40 and len(csrf.value) >= 40
    for cookie in (session, csrf):
        assert cookie.attributes["path"] == "/"
        assert cookie.attributes["samesite"].lower() == "lax"
        assert cookie.attributes["max-age"] == str(api.settings.session_ttl_s)
    assert "httponly" in _raw_attributes(done, "keel_session")
    assert "httponly" not in _raw_attributes(done, "keel_csrf")  # the page reads it
    assert "secure" not in _raw_attributes(done, "keel_session")  # KEEL_SESSION_COOKIE_SECURE=false here
    token_calls = [r for r in idp.token_requests if r.get("grant_type") == "authorization_code"]
    assert len(token_calls) == 1 and token_calls[0]["code_verifier"]

    # 3. the cookie authenticates
    me = await api.http.get(ME, headers=_cookie_header(session.value))
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == idp.user.oid
    assert me.json()["email"] == idp.user.email
    assert me.json()["auth_method"] == "session"
    assert me.json()["roles"] == ["OrgAdmin"]

    # 4. unsafe methods need X-CSRF-Token
    blank = {"message": "   "}
    no_csrf = await api.http.post("/api/v1/chat", headers=_cookie_header(session.value), json=blank)
    assert no_csrf.status_code == 403
    assert no_csrf.json()["error"]["code"] == "csrf_failed"
    wrong = await api.http.post(
        "/api/v1/chat", headers={**_cookie_header(session.value), "X-CSRF-Token": "x" * 43}, json=blank
    )
    assert wrong.status_code == 403
    with_csrf = await api.http.post(
        "/api/v1/chat", headers={**_cookie_header(session.value), "X-CSRF-Token": csrf.value}, json=blank
    )
    assert with_csrf.status_code == 422  # past authentication and CSRF: the route's own validation
    assert with_csrf.json()["error"]["code"] == "empty_message"

    # 5. refresh rotates the session id and CSRF token
    no_csrf_refresh = await api.http.post("/api/v1/auth/refresh", headers=_cookie_header(session.value))
    assert no_csrf_refresh.status_code == 403
    refreshed = await api.http.post(
        "/api/v1/auth/refresh", headers={**_cookie_header(session.value), "X-CSRF-Token": csrf.value}
    )
    assert refreshed.status_code == 204, refreshed.text
    rotated = _set_cookies(refreshed)
    new_session, new_csrf = rotated["keel_session"], rotated["keel_csrf"]
    assert new_session.value != session.value and new_csrf.value != csrf.value
    assert 0 < int(new_session.attributes["max-age"]) <= api.settings.session_ttl_s
    assert (await api.http.get(ME, headers=_cookie_header(session.value))).status_code == 401
    assert (await api.http.get(ME, headers=_cookie_header(new_session.value))).status_code == 200
    stale_csrf = await api.http.post(
        "/api/v1/auth/logout", headers={**_cookie_header(new_session.value), "X-CSRF-Token": csrf.value}
    )
    assert stale_csrf.status_code == 403

    # 6. logout ends the session and clears the cookies
    out = await api.http.post(
        "/api/v1/auth/logout", headers={**_cookie_header(new_session.value), "X-CSRF-Token": new_csrf.value}
    )
    assert out.status_code == 204, out.text
    cleared = _set_cookies(out)
    assert cleared["keel_session"].value == "" and cleared["keel_session"].attributes["max-age"] == "0"
    assert cleared["keel_csrf"].attributes["max-age"] == "0"
    gone = await api.http.get(ME, headers=_cookie_header(new_session.value))
    assert gone.status_code == 401
    assert gone.json()["error"]["code"] == "unauthenticated"


@pytest.mark.oidc_settings(session_cookie_secure=True)
async def test_production_shape_form_post_and_secure_cookies(
    api: RunningApi, idp: FakeOidcIssuer, browser: httpx.AsyncClient
) -> None:
    callback = await _authorize(api, browser, "/chat")
    assert parse_qs(urlsplit(callback.login.headers["location"]).query)["response_mode"] == ["form_post"]
    assert callback.method == "POST"  # the code came in a form post, not in a URL
    assert {"secure", "httponly"} <= _raw_attributes(callback.login, "keel_login")
    assert _set_cookies(callback.login)["keel_login"].attributes["samesite"].lower() == "none"

    done = await _deliver(browser, callback)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/chat"
    for name in ("keel_session", "keel_csrf"):
        assert "secure" in _raw_attributes(done, name)
    assert "httponly" in _raw_attributes(done, "keel_session")
    assert "httponly" not in _raw_attributes(done, "keel_csrf")
    session = _set_cookies(done)["keel_session"].value
    me = await api.http.get(ME, headers=_cookie_header(session))
    assert me.status_code == 200 and me.json()["user_id"] == idp.user.oid


async def test_tampered_state_fails(api: RunningApi, browser: httpx.AsyncClient) -> None:
    callback = await _authorize(api, browser)
    state = callback.params["state"]
    tampered = {**callback.params, "state": state[:-2] + ("BB" if state.endswith("AA") else "AA")}
    resp = await _deliver(browser, callback, params=tampered)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "login_failed"
    assert "set-cookie" not in resp.headers


async def test_a_state_is_used_once(api: RunningApi, browser: httpx.AsyncClient) -> None:
    callback = await _authorize(api, browser)
    assert (await _deliver(browser, callback)).status_code == 303
    replay = await _deliver(browser, callback)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "login_failed"


async def test_pkce_mismatch_fails(api: RunningApi, idp: FakeOidcIssuer, browser: httpx.AsyncClient) -> None:
    """An intercepted code redeemed through another sign-in (another PKCE verifier) fails."""
    victim = await _authorize(api, browser)
    attacker = await _authorize(api, browser)
    stolen = {"code": victim.params["code"], "state": attacker.params["state"]}
    resp = await _deliver(browser, attacker, params=stolen)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "login_failed"
    assert "set-cookie" not in resp.headers
    assert idp.token_errors == ["AADSTS501481: the code_verifier does not match"]


async def test_an_answer_for_another_browser_fails(api: RunningApi, browser: httpx.AsyncClient) -> None:
    """Login CSRF: a code and state someone else obtained cannot sign this browser in."""
    mine = await _authorize(api, browser)
    for binding in (None, mine.binding):
        theirs = await _authorize(api, browser)
        resp = await _deliver(browser, theirs, binding=binding)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "login_failed"


async def test_idp_error_fails(api: RunningApi, browser: httpx.AsyncClient) -> None:
    callback = await _authorize(api, browser)
    refusal = {
        "error": "access_denied",
        "error_description": "AADSTS65004: declined",
        "state": callback.params["state"],
    }
    resp = await _deliver(browser, callback, params=refusal)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "login_failed"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "chat"])
async def test_next_cannot_leave_the_site(api: RunningApi, browser: httpx.AsyncClient, target: str) -> None:
    done = await _sign_in(api, browser, next_path=target)
    assert done.status_code == 303
    assert done.headers["location"] == api.settings.web_post_login_path


async def test_group_overage_at_sign_in(
    api: RunningApi, idp: FakeOidcIssuer, browser: httpx.AsyncClient
) -> None:
    idp.user.groups = None
    idp.graph_groups[idp.user.oid] = ["0000aaaa-0000-4000-8000-000000000001", ADMIN_GROUP]
    done = await _sign_in(api, browser)
    session = _set_cookies(done)["keel_session"].value
    me = (await api.http.get(ME, headers=_cookie_header(session))).json()
    assert me["groups"] == idp.graph_groups[idp.user.oid]
    assert me["roles"] == ["OrgAdmin"]


async def test_logout_and_refresh_with_a_bearer_token(
    api: RunningApi, idp: FakeOidcIssuer, browser: httpx.AsyncClient
) -> None:
    """A bearer caller has no web session: refresh is refused, logout only clears cookies,
    and a session cookie sent alongside is left alone (the bearer credential wins)."""
    session = _set_cookies(await _sign_in(api, browser))["keel_session"].value
    bearer = {"Authorization": f"Bearer {idp.issue()}", **_cookie_header(session)}
    refresh = await api.http.post("/api/v1/auth/refresh", headers=bearer)
    assert refresh.status_code == 422
    assert refresh.json()["error"]["code"] == "invalid_request"
    out = await api.http.post("/api/v1/auth/logout", headers=bearer)
    assert out.status_code == 204
    assert _set_cookies(out)["keel_session"].attributes["max-age"] == "0"
    assert (await api.http.get(ME, headers=_cookie_header(session))).status_code == 200


async def _audit_rows(api: RunningApi, sql: str, *args: object) -> list[dict[str, object]]:
    conn = await asyncpg.connect(str(api.settings.database_url))
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def test_sign_in_refresh_logout_and_a_failed_sign_in_are_audited_once(
    api: RunningApi, idp: FakeOidcIssuer, browser: httpx.AsyncClient
) -> None:
    done = await _sign_in(api, browser)
    assert done.status_code == 303, done.text
    cookies = _set_cookies(done)
    session, csrf = cookies["keel_session"].value, cookies["keel_csrf"].value
    refreshed = await api.http.post(
        "/api/v1/auth/refresh", headers={**_cookie_header(session), "X-CSRF-Token": csrf}
    )
    assert refreshed.status_code == 204
    rotated = _set_cookies(refreshed)
    out = await api.http.post(
        "/api/v1/auth/logout",
        headers={**_cookie_header(rotated["keel_session"].value), "X-CSRF-Token": rotated["keel_csrf"].value},
    )
    assert out.status_code == 204

    rows = await _audit_rows(
        api,
        "SELECT seq, event, user_id, outcome, occurred_at, request_id, trace_id, hash FROM audit_events"
        " WHERE user_id = $1 AND event LIKE 'auth.%' ORDER BY seq",
        idp.user.oid,
    )
    assert [r["event"] for r in rows] == ["auth.login", "auth.token_refresh", "auth.logout"]
    for row, response in zip(rows, (done, refreshed, out), strict=True):
        assert row["outcome"] == "success" and row["occurred_at"] and row["hash"] and row["trace_id"]
        assert row["request_id"] == response.headers["x-request-id"]

    callback = await _authorize(api, browser)
    failed = await _deliver(browser, callback, binding="not-this-browser")
    assert failed.status_code == 401
    [failure] = await _audit_rows(
        api,
        "SELECT event, user_id, outcome, details FROM audit_events WHERE request_id = $1",
        failed.headers["x-request-id"],
    )
    assert failure["event"] == "auth.login_failed" and failure["outcome"] == "failure"
    assert failure["user_id"] is None and failure["details"]
