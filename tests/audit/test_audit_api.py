"""``GET /api/v1/admin/audit`` and its export: refused to a User, filtered by user,
event and time range, paginated by ``before_seq``; trace ids from ``traceparent``."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from infra.settings import Settings
from tests.audit.test_scenario import audit_events
from tests.conftest import RunningApi, running_api

pytestmark = pytest.mark.slow

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_audit_route_is_refused_to_users_and_filters(api: RunningApi) -> None:
    run = uuid.uuid4().hex[:6]
    admin_id, user_id = f"aud-api-admin-{run}", f"aud-api-user-{run}"
    admin = {"Authorization": f"Bearer {await api.token(admin_id, roles=['OrgAdmin'])}"}
    auditor = {"Authorization": f"Bearer {await api.token(f'aud-api-dept-{run}', roles=['DeptAdmin'])}"}
    user = await api.auth(user_id)

    for path in ("/api/v1/admin/audit", "/api/v1/admin/audit/export"):
        refused = await api.http.get(path, headers=user)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
    assert (await api.http.get("/api/v1/admin/audit")).status_code == 401

    created = []
    for i in range(3):
        resp = await api.http.post(
            "/api/v1/admin/knowledge-bases",
            json={"name": f"Audit API {run} {i}"},
            headers={**admin, "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"},
        )
        assert resp.status_code == 201, resp.text
        created.append(resp.json()["id"])
    bad_trace = await api.http.post(
        "/api/v1/admin/knowledge-bases",
        json={"name": f"Audit API {run} bad trace"},
        headers={**admin, "traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},
    )
    assert bad_trace.status_code == 201

    # By user and event (a DeptAdmin may read the trail too).
    kbs = await audit_events(api, auditor, user_id=admin_id, event="admin.knowledge_base_created")
    assert [e["resource_id"] for e in kbs] == [bad_trace.json()["id"], *reversed(created)]
    assert [e["trace_id"] for e in kbs[1:]] == [TRACE] * 3
    assert kbs[0]["trace_id"] != TRACE and len(kbs[0]["trace_id"]) == 32
    assert all(e["user_id"] == admin_id for e in kbs)
    denied = await audit_events(api, admin, user_id=user_id)
    assert [e["event"] for e in denied] == ["access.denied", "access.denied"]
    assert {e["details"]["permission"] for e in denied} == {"view_audit_logs"}

    # Pagination: newest first, before_seq continues.
    page1 = (
        await api.http.get("/api/v1/admin/audit", params={"user_id": admin_id, "limit": 2}, headers=admin)
    ).json()
    assert len(page1["events"]) == 2 and page1["next_before_seq"] == page1["events"][-1]["seq"]
    page2 = (
        await api.http.get(
            "/api/v1/admin/audit",
            params={"user_id": admin_id, "limit": 2, "before_seq": page1["next_before_seq"]},
            headers=admin,
        )
    ).json()
    seqs = [e["seq"] for e in page1["events"] + page2["events"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4

    # Time range: since is inclusive, until exclusive.
    oldest, newest = kbs[-1], kbs[0]
    since, until = oldest["occurred_at"], newest["occurred_at"]
    ranged = await audit_events(
        api, admin, user_id=admin_id, event="admin.knowledge_base_created", since=since, until=until
    )
    assert [e["seq"] for e in ranged] == [e["seq"] for e in kbs[1:]]
    future = (datetime.fromisoformat(newest["occurred_at"]) + timedelta(days=1)).isoformat()
    assert await audit_events(api, admin, user_id=admin_id, since=future) == []

    # Bad filters are refused with the error shape.
    for params in ({"event": "no.such.event"}, {"since": until, "until": since}, {"limit": 0}):
        bad = await api.http.get("/api/v1/admin/audit", params=params, headers=admin)
        assert bad.status_code == 422, params
        assert bad.json()["error"]["code"] == "invalid_request"

    # The export: same rows, oldest first, one JSON object per line; recorded as audit.exported.
    exported = await api.http.get(
        "/api/v1/admin/audit/export",
        params={"user_id": admin_id, "event": "admin.knowledge_base_created"},
        headers=admin,
    )
    assert exported.status_code == 200
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [line["seq"] for line in lines] == [e["seq"] for e in reversed(kbs)]
    [export_event] = await audit_events(api, admin, user_id=admin_id, event="audit.exported")
    assert export_event["details"]["filter"]["event"] == "admin.knowledge_base_created"


async def test_verify_route_reports_the_chain_and_an_edited_row(audit_settings: Settings) -> None:
    async with running_api(audit_settings) as api:
        auditor = {"Authorization": f"Bearer {await api.token('aud-verify', roles=['DeptAdmin'])}"}
        user = await api.auth("aud-verify-user")
        refused = await api.http.get("/api/v1/admin/audit/verify", headers=user)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        good = await api.http.get("/api/v1/admin/audit/verify", headers=auditor)
        assert good.status_code == 200, good.text
        body = good.json()
        # the refusal and this allowed call (view_audit_logs) are both rows of the chain
        assert body["ok"] is True and body["bad_seq"] is None and body["reason"] is None
        assert body["rows"] >= 2 and body["last_seq"] == body["rows"]

        conn = await asyncpg.connect(str(audit_settings.database_url))
        try:  # a superuser bypassing the append-only triggers
            await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER ALL")
            await conn.execute("UPDATE audit_events SET user_id = 'someone-else' WHERE seq = 1")
            await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER ALL")
        finally:
            await conn.close()
        bad = (await api.http.get("/api/v1/admin/audit/verify", headers=auditor)).json()
        assert bad["ok"] is False and bad["bad_seq"] == 1 and "edited" in bad["reason"]
