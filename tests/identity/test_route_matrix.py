"""Route x role matrix, generated from the OpenAPI document: every operation's
declared permission (its ``security`` scopes) is enforced for every role; every
admin route refuses a User; every resource route answers 404 to another user's id.

New routes are covered without editing this file; a route that needs something
this file does not know (a new path parameter, a public route) fails loudly."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from core.policy.permissions import DEFAULT_ROLE, ROLE_PERMISSIONS
from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, ToolCall, ToolCalls

#: Operations reachable without credentials (sign-in itself).
PUBLIC = {
    ("POST", "/api/v1/auth/dev-token"),
    ("POST", "/api/v1/auth/dev-login"),
    ("GET", "/api/v1/auth/login"),
    ("GET", "/api/v1/auth/callback"),
    ("POST", "/api/v1/auth/callback"),
}
_PARAM = re.compile(r"{(\w+)}")


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, set[str] | None]]:
    """(method, path, required permissions or None when the operation declares no security)."""
    ops = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in methods.items():
            security = op.get("security")
            scopes = None if security is None else {s for req in security for v in req.values() for s in v}
            ops.append((method.upper(), path, scopes))
    return ops


async def _spec(api: RunningApi) -> dict[str, Any]:
    resp = await api.http.get("/openapi.json")
    assert resp.status_code == 200
    return dict(resp.json())


async def _call(
    api: RunningApi, method: str, path: str, headers: dict[str, str], body: Any = None, **kw: Any
) -> httpx.Response:
    if body is not None:
        kw["json"] = body
    elif method in ("POST", "PUT", "PATCH"):
        kw["json"] = {}
    return await api.http.request(method, path, headers=headers, **kw)


async def test_every_operation_declares_its_permission_and_needs_credentials(api: RunningApi) -> None:
    ops = _operations(await _spec(api))
    assert len(ops) > 25
    for method, path, scopes in ops:
        if scopes is None:
            assert (method, path) in PUBLIC, (
                f"{method} {path} declares no security: is it meant to be public?"
            )
            continue
        resp = await _call(api, method, _PARAM.sub("x", path), {})
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "unauthenticated"
        assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_route_by_role_matrix(api: RunningApi) -> None:
    ops = [op for op in _operations(await _spec(api)) if op[2] is not None]
    admin_routes = [op for op in ops if op[1].startswith("/api/v1/admin/")]
    assert admin_routes, "no admin routes found"
    roles: list[str | None] = [*ROLE_PERMISSIONS, None]
    checked = 0
    for role in roles:
        granted = {p.value for p in ROLE_PERMISSIONS[role or DEFAULT_ROLE]}
        claims = {"roles": [role]} if role else {}
        token = await api.token("matrix-" + (role or "none"), **claims)
        headers = {"Authorization": f"Bearer {token}"}
        for method, path, scopes in ops:
            assert scopes is not None
            resp = await _call(api, method, _PARAM.sub("x", path), headers)
            is_json = resp.headers.get("content-type", "").startswith("application/json")
            code = resp.json().get("error", {}).get("code") if is_json and resp.content else None
            if scopes <= granted:
                assert code not in ("forbidden", "insufficient_scope", "unauthenticated"), (
                    role,
                    method,
                    path,
                )
            else:
                assert resp.status_code == 403 and code == "forbidden", (role, method, path, resp.text)
            checked += 1
    # Every admin route refuses a plain User (explicitly, whatever the table says).
    user = await api.auth("matrix-plain-user")
    for method, path, scopes in admin_routes:
        assert scopes, f"admin route {method} {path} declares no permission"
        resp = await _call(api, method, _PARAM.sub("x", path), user)
        assert resp.status_code == 403, (method, path)
    assert checked == len(ops) * len(roles)


# ------------------------------------------------------------------ 404 to other users' ids
_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/knowledge-bases/{kb_id}/documents/{doc_id}/shares"): {"json": {"user_ids": ["x"]}},
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}/documents/{doc_id}/shares"): {"json": {"user_ids": ["x"]}},
    ("POST", "/api/v1/knowledge-bases/{kb_id}/query"): {"json": {"query": "hello"}},
    ("POST", "/api/v1/approvals/{approval_id}"): {"json": {"decision": "approve"}},
    ("PATCH", "/api/v1/sessions/{session_id}"): {"json": {"title": "mallory was here"}},
    ("POST", "/api/v1/knowledge-bases/{kb_id}/documents"): {
        "files": {"file": ("n.txt", b"notes of mallory", "text/plain")}
    },
    ("POST", "/api/v1/knowledge-bases/{kb_id}/ingestions"): {
        "files": [("files", ("n.txt", b"notes of mallory", "text/plain"))]
    },
}


@pytest.fixture
def tool_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"tool_allowed_hosts": ["127.0.0.1"]})


async def _owner_resources(
    api: RunningApi, owner: dict[str, str], llm: FakeOpenAI, counter_url: str
) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {await api.token('matrix-admin', roles=['OrgAdmin'])}"}
    name = f"ctr{uuid.uuid4().hex[:6]}"
    added = await api.http.post(
        "/api/v1/admin/tools",
        headers=admin,
        json={"name": name, "transport": "http", "url": counter_url, "requires_approval": True},
        timeout=90,
    )
    assert added.status_code == 201, added.text
    llm.enqueue(ToolCalls([ToolCall(f"{name}__record_event", json.dumps({"name": "x"}))]))
    chat = (await api.http.post("/api/v1/chat", headers=owner, json={"message": "record x"})).json()
    assert chat["status"] == "awaiting_approval", chat
    kbs = (await api.http.get("/api/v1/knowledge-bases", headers=owner)).json()["knowledge_bases"]
    kb_id = next(kb["id"] for kb in kbs if kb["personal"])
    doc = await api.http.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        headers=owner,
        files={"file": ("a.txt", b"alice's private notes", "text/plain")},
    )
    assert doc.status_code == 202, doc.text
    batch = await api.http.post(
        f"/api/v1/knowledge-bases/{kb_id}/ingestions",
        headers=owner,
        files=[("files", ("b.txt", b"more private notes", "text/plain"))],
    )
    assert batch.status_code == 202, batch.text
    key = await api.http.post("/api/v1/api-keys", headers=owner, json={"name": "k", "scopes": ["use_agent"]})
    return {
        "session_id": chat["session_id"],
        "turn_id": chat["turn_id"],
        "approval_id": chat["approvals"][0]["id"],
        "kb_id": kb_id,
        "doc_id": doc.json()["document_id"],
        "batch_id": batch.json()["batch_id"],
        "key_id": key.json()["id"],
    }


async def test_every_resource_route_answers_404_to_another_users_id(
    tool_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    with CounterMcpServer() as counter:
        async with running_platform(tool_settings, temporal_client) as api:
            owner = await api.auth(f"matrix-owner-{uuid.uuid4().hex[:6]}")
            intruder = await api.auth(f"matrix-intruder-{uuid.uuid4().hex[:6]}")
            ids = await _owner_resources(api, owner, llm, counter.url)
            routes = [
                (m, p)
                for m, p, scopes in _operations(await _spec(api))
                if scopes is not None and _PARAM.search(p) and not p.startswith("/api/v1/admin/")
            ]
            assert len(routes) >= 12
            for method, path in routes:
                params = _PARAM.findall(path)
                missing = [p for p in params if p not in ids]
                assert not missing, (
                    f"{method} {path}: no owned resource for {missing}; extend _owner_resources"
                )
                url = path.format(**ids)
                extra = _BODIES.get((method, path), {})
                resp = await api.http.request(method, url, headers=intruder, **extra)
                assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
                assert resp.json()["error"]["request_id"]
            # The owner lost nothing.
            assert (
                await api.http.get(f"/api/v1/sessions/{ids['session_id']}", headers=owner)
            ).status_code == 200
            doc = f"/api/v1/knowledge-bases/{ids['kb_id']}/documents/{ids['doc_id']}"
            assert (await api.http.get(doc, headers=owner)).status_code == 200
            pending = (await api.http.get("/api/v1/approvals", headers=owner)).json()["approvals"]
            assert [a["id"] for a in pending] == [ids["approval_id"]]
            keys = (await api.http.get("/api/v1/api-keys", headers=owner)).json()["api_keys"]
            assert keys[0]["status"] == "active"
            # Clean the org-wide allowlist for the tests that follow.
            conn = await asyncpg.connect(str(tool_settings.database_url))
            try:
                await conn.execute("UPDATE tool_servers SET deleted_at = now() WHERE deleted_at IS NULL")
            finally:
                await conn.close()
