"""Bad input gets a specific error code, a request id and no stack trace, and loses nothing."""

from __future__ import annotations

import time

import jwt

from core.models.principal import Principal
from infra.auth.dev_tokens import DEV_AUDIENCE, DEV_ISSUER, issue_dev_token
from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI


def _assert_error(resp: object, status: int, code: str) -> None:
    import httpx

    assert isinstance(resp, httpx.Response)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in resp.text


async def test_bad_chat_requests_get_specific_codes(platform: RunningApi, llm: FakeOpenAI) -> None:
    headers = await platform.auth("olga")
    first = (await platform.http.post("/api/v1/chat", json={"message": "keep me"}, headers=headers)).json()
    sid = first["session_id"]
    post = platform.http.post

    _assert_error(
        await post(
            "/api/v1/chat",
            content=b'{"message": "unterminated',
            headers={**headers, "content-type": "application/json"},
        ),
        400,
        "malformed_json",
    )
    _assert_error(await post("/api/v1/chat", json={"message": "   "}, headers=headers), 422, "empty_message")
    _assert_error(
        await post("/api/v1/chat", json={"message": "x" * 1_000_000}, headers=headers),
        413,
        "message_too_large",
    )
    _assert_error(await post("/api/v1/chat", json={}, headers=headers), 422, "invalid_request")
    _assert_error(
        await post("/api/v1/chat", json={"message": "hi", "surprise": 1}, headers=headers),
        422,
        "invalid_request",
    )
    _assert_error(
        await post("/api/v1/chat", json={"message": "hi", "session_id": "no-such-session"}, headers=headers),
        404,
        "session_not_found",
    )
    _assert_error(
        await post("/api/v1/chat/stream", json={"message": "", "session_id": sid}, headers=headers),
        422,
        "empty_message",
    )
    _assert_error(await platform.http.get("/api/v1/nothing-here", headers=headers), 404, "route_not_found")
    _assert_error(
        await platform.http.get(
            f"/api/v1/sessions/{sid}/turns/{first['turn_id']}/events",
            headers={**headers, "Last-Event-ID": "garbage"},
        ),
        422,
        "invalid_request",
    )

    # Nothing reached the model, and what was stored before is intact.
    assert llm.request_count == 1
    detail = (await platform.http.get(f"/api/v1/sessions/{sid}", headers=headers)).json()
    assert [m["content"] for m in detail["messages"]] == ["keep me", "Echo: keep me"]


async def test_tokens_are_checked(api: RunningApi) -> None:
    secret = api.settings.secret_key.get_secret_value()
    alice = Principal(user_id="alice")
    expired = issue_dev_token(alice, secret=secret, ttl_s=60, now=time.time() - 3600)
    forged = issue_dev_token(alice, secret="not-the-server-secret-but-long-enough-for-hs256", ttl_s=60)
    unsigned = jwt.encode(
        {
            "sub": "alice",
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        key="",
        algorithm="none",
    )
    get = api.http.get
    _assert_error(await get("/api/v1/sessions"), 401, "unauthenticated")
    _assert_error(
        await get("/api/v1/sessions", headers={"Authorization": "Basic abc"}), 401, "unauthenticated"
    )
    _assert_error(
        await get("/api/v1/sessions", headers={"Authorization": f"Bearer {expired}"}), 401, "token_expired"
    )
    _assert_error(
        await get("/api/v1/sessions", headers={"Authorization": f"Bearer {forged}"}), 401, "invalid_token"
    )
    _assert_error(
        await get("/api/v1/sessions", headers={"Authorization": f"Bearer {unsigned}"}), 401, "invalid_token"
    )
    _assert_error(
        await get("/api/v1/sessions", headers={"Authorization": "Bearer not.a.jwt"}), 401, "invalid_token"
    )
    resp = await get("/api/v1/sessions", headers={"Authorization": f"Bearer {expired}"})
    assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_request_ids_are_echoed_or_generated(api: RunningApi) -> None:
    resp = await api.http.get("/health/live", headers={"X-Request-ID": "client-supplied-123"})
    assert resp.headers["x-request-id"] == "client-supplied-123"
    resp = await api.http.get("/health/live", headers={"X-Request-ID": "bad id with spaces\x7f"})
    assert resp.headers["x-request-id"] != "bad id with spaces\x7f"
    assert len(resp.headers["x-request-id"]) == 32


async def test_dev_token_request_is_validated(api: RunningApi) -> None:
    _assert_error(await api.http.post("/api/v1/auth/dev-token", json={"user_id": ""}), 422, "invalid_request")
    _assert_error(
        await api.http.post("/api/v1/auth/dev-token", json={"user_id": "a b"}), 422, "invalid_request"
    )


async def test_a_wrong_method_answers_405_with_allow_and_keels_body(api: RunningApi) -> None:
    headers = await api.auth("olga")
    for method, path, allowed in (
        ("PUT", "/api/v1/sessions/abc", {"GET", "PATCH", "DELETE"}),  # three routes share the path
        ("DELETE", "/api/v1/chat", {"POST"}),
        ("PATCH", "/api/v1/auth/callback", {"GET", "POST"}),
        ("POST", "/health/live", {"GET"}),
        ("DELETE", "/metrics", {"GET", "HEAD"}),
    ):
        resp = await api.http.request(method, path, headers=headers)
        _assert_error(resp, 405, "method_not_allowed")
        assert set(resp.headers["allow"].split(", ")) == allowed, (path, resp.headers["allow"])
