"""API keys: shown once, stored hashed, scoped, rotatable, revocable, and accepted
in exactly one header form (``Authorization: Bearer keel_…``)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.conftest import RunningApi


async def _create(api: RunningApi, headers: dict[str, str], **body: object) -> dict[str, object]:
    resp = await api.http.post("/api/v1/api-keys", headers=headers, json={"name": "ci", **body})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _bearer(key: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_key_is_shown_once_stored_hashed_and_works_as_bearer(api: RunningApi) -> None:
    owner = await api.auth("key-owner-1")
    created = await _create(api, owner, scopes=["use_agent", "query_kb"])
    key = str(created["key"])
    assert key.startswith("keel_") and len(key) >= 45
    assert created["status"] == "active" and created["prefix"] == key[: len(created["prefix"])]  # type: ignore[arg-type]

    listed = (await api.http.get("/api/v1/api-keys", headers=owner)).json()["api_keys"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and key not in str(listed)

    conn = await asyncpg.connect(api.settings.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", created["id"])
    finally:
        await conn.close()
    assert row is not None
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in " ".join(str(v) for v in dict(row).values())

    resp = await api.http.get("/api/v1/sessions", headers=_bearer(key))
    assert resp.status_code == 200, resp.text


async def test_key_is_refused_in_any_other_header_form(api: RunningApi) -> None:
    owner = await api.auth("key-owner-2")
    key = str((await _create(api, owner, scopes=["use_agent"]))["key"])
    attempts = [
        {"headers": {"X-API-Key": key}},
        {"headers": {"Api-Key": key}},
        {"headers": {"Authorization": f"ApiKey {key}"}},
        {"headers": {"Authorization": f"Token {key}"}},
        {"headers": {"Authorization": key}},
        {"headers": {}, "params": {"api_key": key}},
        {"headers": {"Cookie": f"keel_api_key={key}"}},
    ]
    for attempt in attempts:
        resp = await api.http.get("/api/v1/sessions", **attempt)  # type: ignore[arg-type]
        assert resp.status_code == 401, (attempt, resp.text)
        assert resp.json()["error"]["code"] in ("unauthenticated", "invalid_token")
        assert resp.json()["error"]["request_id"]


async def test_scopes_narrow_what_a_key_may_do(api: RunningApi) -> None:
    owner = await api.auth("key-owner-3")
    key = str((await _create(api, owner, scopes=["query_kb"]))["key"])
    resp = await api.http.post("/api/v1/chat", headers=_bearer(key), json={"message": "hi"})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "insufficient_scope"
    assert (await api.http.get("/api/v1/knowledge-bases", headers=_bearer(key))).status_code == 200


async def test_a_key_cannot_hold_more_than_its_owner_nor_make_keys(api: RunningApi) -> None:
    user = await api.auth("key-owner-4")  # role User: no manage_tools
    resp = await api.http.post(
        "/api/v1/api-keys", headers=user, json={"name": "x", "scopes": ["manage_tools"]}
    )
    assert resp.status_code == 403
    bad = await api.http.post("/api/v1/api-keys", headers=user, json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 422
    key = str((await _create(api, user, scopes=["use_agent"]))["key"])
    resp = await api.http.post(
        "/api/v1/api-keys", headers=_bearer(key), json={"name": "y", "scopes": ["use_agent"]}
    )
    assert resp.status_code == 403
    # A ReadOnly user's key cannot use the agent even if asked for
    ro = {"Authorization": f"Bearer {await api.token('key-owner-ro', roles=['ReadOnly'])}"}
    resp = await api.http.post("/api/v1/api-keys", headers=ro, json={"name": "z", "scopes": ["use_agent"]})
    assert resp.status_code == 403


async def test_rotate_and_revoke(api: RunningApi) -> None:
    owner = await api.auth("key-owner-5")
    other = await api.auth("key-owner-6")
    created = await _create(api, owner, scopes=["use_agent"])
    old_key, key_id = str(created["key"]), str(created["id"])

    # Another user cannot see, rotate or revoke it
    assert (await api.http.get("/api/v1/api-keys", headers=other)).json()["api_keys"] == []
    assert (await api.http.post(f"/api/v1/api-keys/{key_id}/rotate", headers=other)).status_code == 404
    assert (await api.http.delete(f"/api/v1/api-keys/{key_id}", headers=other)).status_code == 404

    rotated = await api.http.post(f"/api/v1/api-keys/{key_id}/rotate", headers=owner)
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["key"]
    assert new_key != old_key and rotated.json()["id"] == key_id
    assert (await api.http.get("/api/v1/sessions", headers=_bearer(old_key))).status_code == 401
    assert (await api.http.get("/api/v1/sessions", headers=_bearer(new_key))).status_code == 200

    assert (await api.http.delete(f"/api/v1/api-keys/{key_id}", headers=owner)).status_code == 204
    resp = await api.http.get("/api/v1/sessions", headers=_bearer(new_key))
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_token"
    assert (await api.http.delete(f"/api/v1/api-keys/{key_id}", headers=owner)).status_code == 404
    assert (await api.http.post(f"/api/v1/api-keys/{key_id}/rotate", headers=owner)).status_code == 404
    listed = (await api.http.get("/api/v1/api-keys", headers=owner)).json()["api_keys"]
    assert listed[0]["status"] == "revoked"

    # Each change is audited once, for the owner only (the other user's attempts changed nothing).
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT event, user_id, outcome FROM audit_events WHERE resource_id = $1 ORDER BY seq", key_id
        )
    finally:
        await conn.close()
    assert [(r["event"], r["user_id"], r["outcome"]) for r in rows] == [
        ("api_key.created", "key-owner-5", "success"),
        ("api_key.rotated", "key-owner-5", "success"),
        ("api_key.revoked", "key-owner-5", "success"),
    ]


async def test_expiry_is_bounded_and_enforced(api: RunningApi) -> None:
    owner = await api.auth("key-owner-7")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    too_far = (datetime.now(UTC) + timedelta(days=api.settings.api_key_max_ttl_days + 2)).isoformat()
    for when in (past, too_far, "2030-01-01T00:00:00"):
        resp = await api.http.post(
            "/api/v1/api-keys", headers=owner, json={"name": "x", "scopes": ["use_agent"], "expires_at": when}
        )
        assert resp.status_code == 422, (when, resp.text)
    created = await _create(api, owner, scopes=["use_agent"])
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", created["id"]
        )
    finally:
        await conn.close()
    resp = await api.http.get("/api/v1/sessions", headers=_bearer(created["key"]))
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "token_expired"


async def test_unknown_and_malformed_keys_are_refused(api: RunningApi) -> None:
    for key in ("keel_" + "A" * 43, "keel_", "keel_" + "x" * 500):
        resp = await api.http.get("/api/v1/sessions", headers=_bearer(key))
        assert resp.status_code == 401, key
