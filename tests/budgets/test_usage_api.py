"""GET /usage, GET /admin/usage and PUT/DELETE /admin/budgets/{user_id}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.openai_server import FakeOpenAI, Reply

PRICE_PROMPT = Decimal("0.5")  # per 1k tokens, budget_settings' price table
PRICE_COMPLETION = Decimal("1.5")


def _cost(prompt: int, completion: int) -> float:
    return float((prompt * PRICE_PROMPT + completion * PRICE_COMPLETION) / 1000)


async def _bearer(api: RunningApi, user_id: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await api.token(user_id, roles=list(roles))}"}


async def _chat(api: RunningApi, headers: dict[str, str], message: str) -> dict[str, Any]:
    body = (await api.http.post("/api/v1/chat", json={"message": message}, headers=headers)).json()
    assert body["status"] == "completed", body
    return dict(body)


async def test_my_usage_and_the_admin_view(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    llm.set_default(Reply("alpha beta gamma delta"))
    async with running_platform(budget_settings, temporal_client) as api:
        alice = await _bearer(api, "usage-alice")
        bob = await _bearer(api, "usage-bob")
        turns = [await _chat(api, alice, "hello there"), await _chat(api, alice, "and again")]
        await _chat(api, bob, "bob here")
        prompt = sum(t["usage"]["prompt_tokens"] for t in turns)
        completion = sum(t["usage"]["completion_tokens"] for t in turns)
        assert completion == 8 and prompt > 0

        mine = (await api.http.get("/api/v1/usage", headers=alice)).json()
        assert mine["user_id"] == "usage-alice" and mine["currency"] == "EUR"
        assert mine["budget_source"] == "default" and mine["warning_ratio"] == 0.8
        for period in ("today", "this_month"):
            view = mine[period]
            assert (view["prompt_tokens"], view["completion_tokens"]) == (prompt, completion)
            assert view["total_tokens"] == prompt + completion
            assert view["cost"] == _cost(prompt, completion)
            assert view["reserved_tokens"] == 0
            [by_model] = view["by_model"]
            assert by_model["model"] == "fake-model" and by_model["cost"] == _cost(prompt, completion)
        assert mine["today"]["limit_tokens"] == 1000
        assert mine["today"]["remaining_tokens"] == 1000 - prompt - completion
        assert mine["this_month"]["limit_tokens"] is None and mine["this_month"]["remaining_tokens"] is None
        now = datetime.now(UTC)
        assert mine["today"]["resets_at"].startswith((now + timedelta(days=1)).strftime("%Y-%m-%d"))

        # Bob sees his own usage only.
        bobs = (await api.http.get("/api/v1/usage", headers=bob)).json()
        assert bobs["user_id"] == "usage-bob"
        assert bobs["today"]["total_tokens"] < prompt + completion
        assert [m["model"] for m in bobs["today"]["by_model"]] == ["fake-model"]

        # The admin view: refused to a User, per user and model for an auditor, with filters.
        assert (await api.http.get("/api/v1/admin/usage", headers=alice)).status_code == 403
        auditor = await _bearer(api, "usage-auditor", "DeptAdmin")
        everyone = (await api.http.get("/api/v1/admin/usage", headers=auditor)).json()
        rows = {(r["user_id"], r["model"]): r for r in everyone["usage"]}
        assert rows[("usage-alice", "fake-model")]["total_tokens"] == prompt + completion
        assert rows[("usage-alice", "fake-model")]["cost"] == _cost(prompt, completion)
        assert ("usage-bob", "fake-model") in rows
        only = (
            await api.http.get("/api/v1/admin/usage", params={"user_id": "usage-bob"}, headers=auditor)
        ).json()
        assert {r["user_id"] for r in only["usage"]} == {"usage-bob"}
        today = now.date().isoformat()
        ranged = await api.http.get(
            "/api/v1/admin/usage",
            params={"from": today, "to": today, "user_id": "usage-alice"},
            headers=auditor,
        )
        assert ranged.json()["total_tokens"] == prompt + completion
        tomorrow = (now + timedelta(days=1)).date().isoformat()
        later = await api.http.get(
            "/api/v1/admin/usage", params={"from": tomorrow, "to": tomorrow}, headers=auditor
        )
        assert later.json()["usage"] == [] and later.json()["total_tokens"] == 0
        backwards = await api.http.get(
            "/api/v1/admin/usage", params={"from": tomorrow, "to": today}, headers=auditor
        )
        assert backwards.status_code == 422 and backwards.json()["error"]["code"] == "invalid_request"


async def test_budget_overrides_are_org_admin_only_effective_and_audited(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    async with running_platform(budget_settings, temporal_client) as api:
        user = await _bearer(api, "budget-target")
        dept_admin = await _bearer(api, "budget-dept", "DeptAdmin")
        admin = await _bearer(api, "budget-org", "OrgAdmin")
        url = "/api/v1/admin/budgets/budget-target"
        body = {"daily_tokens": 50_000, "monthly_tokens": None}
        for headers in (user, dept_admin):
            for resp in (
                await api.http.put(url, json=body, headers=headers),
                await api.http.delete(url, headers=headers),
                await api.http.get(url, headers=headers),
            ):
                assert resp.status_code == 403, resp.text
                assert resp.json()["error"]["code"] == "forbidden"
        assert (await api.http.get("/api/v1/usage", headers=user)).json()["budget_source"] == "default"

        bad = await api.http.put(url, json={"daily_tokens": 0, "monthly_tokens": None}, headers=admin)
        assert bad.status_code == 422
        with structlog.testing.capture_logs() as logs:
            put = await api.http.put(url, json=body, headers=admin)
            assert put.status_code == 200, put.text
            assert put.json() == {
                **put.json(),
                "user_id": "budget-target",
                "daily_tokens": 50_000,
                "monthly_tokens": None,
                "source": "override",
                "updated_by": "budget-org",
            }
            mine = (await api.http.get("/api/v1/usage", headers=user)).json()
            assert mine["budget_source"] == "override"
            assert mine["today"]["limit_tokens"] == 50_000 and mine["this_month"]["limit_tokens"] is None
            assert (await api.http.get(url, headers=admin)).json()["source"] == "override"

            assert (await api.http.delete(url, headers=admin)).status_code == 204
            assert (await api.http.delete(url, headers=admin)).status_code == 204  # idempotent
            back = (await api.http.get("/api/v1/usage", headers=user)).json()
            assert back["budget_source"] == "default" and back["today"]["limit_tokens"] == 1000
            effective = (await api.http.get(url, headers=admin)).json()
            assert effective["source"] == "default" and effective["daily_tokens"] == 1000

        logged = [entry for entry in logs if entry.get("event") == "audit"]
        events = [entry.get("audit_event") for entry in logged]
        audit_api = await api.http.get("/api/v1/admin/audit", headers=admin)
        if audit_api.status_code == 200:  # the Postgres trail, where it is in place
            payload = audit_api.json()
            entries = payload.get("events") or payload.get("entries") or payload.get("items") or []
            events += [e.get("event") for e in entries if e.get("resource_id") == "budget-target"]
        assert events.count("admin.budget_set") >= 1
        assert "admin.budget_cleared" in events
        set_entry = next(e for e in logged if e.get("audit_event") == "admin.budget_set")
        assert set_entry["user_id"] == "budget-org"
