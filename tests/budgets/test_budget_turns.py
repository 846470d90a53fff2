"""Token budgets through the whole platform: API → chat workflow → reserve / LLM / settle.

The fake LLM reports usage the way a server does (prompt and completion token
counts; it counts words) and honours ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from agent_framework import Message
from temporalio.client import Client

from activities.token_estimate import prompt_token_estimate
from core.policy.budget import MIN_OUTPUT_TOKENS
from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import Error, FakeOpenAI, Reply, ToolCall, ToolCalls
from tests.support.sse import collect

REPLY_60_WORDS = " ".join(f"word{n}" for n in range(60))
REPLY_820_WORDS = " ".join(["ok"] * 820)


async def _recorded(database_url: str, user_id: str) -> tuple[int, int]:
    """(tokens recorded for the user, reservations left)."""
    conn = await asyncpg.connect(database_url)
    try:
        used = await conn.fetchval(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_records"
            " WHERE user_id = $1",
            user_id,
        )
        rollup = await conn.fetchval(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_daily WHERE user_id = $1",
            user_id,
        )
        held = await conn.fetchval("SELECT count(*) FROM budget_reservations WHERE user_id = $1", user_id)
    finally:
        await conn.close()
    assert used == rollup
    return int(used), int(held)


def _bound(message: str) -> int:
    """The reservation's prompt bound for a first message under ``system_prompt='Be brief.'``."""
    return prompt_token_estimate([Message("system", ["Be brief."]), Message("user", [message])])


async def test_twenty_concurrent_turns_never_overshoot_the_daily_budget(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    settings = budget_settings.model_copy(
        update={"llm_max_output_tokens": 100, "rate_limit_per_minute": 10_000}
    )
    user = "budget-burst"
    budget = settings.budget_daily_tokens
    assert budget == 1000
    llm.set_default(Reply(REPLY_60_WORDS, ttft_s=0.05, chunk_delay_s=0.001))
    async with running_platform(settings, temporal_client) as api:
        headers = await api.auth(user)

        async def turn(n: int) -> dict[str, Any]:
            resp = await api.http.post("/api/v1/chat", json={"message": f"question {n}"}, headers=headers)
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

        completed_total = 0
        answered = 0
        rounds = 0
        while True:
            rounds += 1
            results = await asyncio.gather(*(turn(n) for n in range(20)))
            completed = [r for r in results if r["status"] == "completed"]
            refused = [r for r in results if r["status"] != "completed"]
            assert all(r["error"]["code"] == "budget_exceeded" for r in refused), refused
            completed_total += len(completed)
            used, held = await _recorded(settings.database_url or "", user)
            assert used <= budget
            assert held == 0
            answered += sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in completed)
            assert used == answered  # every completed call was recorded once, nothing else
            if rounds == 1:
                # The brief's scenario: some turns of one burst completed, the rest were refused.
                assert completed and refused
            if not completed:
                break
            assert rounds < 20
        # The budget was really used up: not even one more minimal call fits.
        assert used + _bound("question 10") + MIN_OUTPUT_TOKENS > budget
        assert llm.request_count == completed_total
        usage = (await api.http.get("/api/v1/usage", headers=headers)).json()
        assert usage["today"]["total_tokens"] == used
        assert usage["today"]["remaining_tokens"] == budget - used
        assert usage["today"]["reserved_tokens"] == 0


async def test_warning_at_80_percent_in_the_response_and_the_stream(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    async with running_platform(budget_settings, temporal_client) as api:
        headers = await api.auth("budget-warn")
        llm.enqueue(Reply(REPLY_820_WORDS))
        first = (await api.http.post("/api/v1/chat", json={"message": "first"}, headers=headers)).json()
        assert first["status"] == "completed"
        used = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
        assert used == 823  # "Be brief." + "first" + 820 words
        warning = first["budget_warning"]
        assert warning["period"] == "daily"
        assert (warning["used_tokens"], warning["limit_tokens"]) == (823, 1000)
        assert warning["ratio"] >= 0.8
        assert "82% of your daily token budget" in warning["message"]

        # The next call has less room than its full allowance: it gets a shorter answer.
        llm.enqueue(Reply(REPLY_820_WORDS))
        async with api.http.stream(
            "POST", "/api/v1/chat/stream", json={"message": "second"}, headers=headers
        ) as resp:
            events = await collect(resp)
        names = [e.event for e in events]
        assert names[-1] == "turn.completed"
        assert "budget.warning" in names and names.index("budget.warning") == len(names) - 2
        streamed = next(e.data for e in events if e.event == "budget.warning")
        final = events[-1].data
        assert (
            streamed["period"] == "daily"
            and streamed["used_tokens"] == final["budget_warning"]["used_tokens"]
        )
        granted = llm.requests[-1]["max_completion_tokens"]
        assert MIN_OUTPUT_TOKENS <= granted <= 1000 - 823 - _bound("second")
        assert final["usage"]["completion_tokens"] == granted  # the model was cut at the grant
        total, held = await _recorded(budget_settings.database_url or "", "budget-warn")
        assert total == streamed["used_tokens"] <= 1000 and held == 0


async def test_warning_comes_before_a_refusal_from_just_under_80_percent(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    """At 78.8 % used, a question of ~400 characters still fits (its estimate is close to
    its real size, not 3-4x it): the turn answers and warns; only then is a turn refused."""
    question = "Please explain the travel expense policy and the receipt rules. " * 6
    async with running_platform(budget_settings, temporal_client) as api:
        headers = await api.auth("budget-78")
        llm.enqueue(Reply(" ".join(["ok"] * 785)))
        first = (await api.http.post("/api/v1/chat", json={"message": "one"}, headers=headers)).json()
        used = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
        assert first["budget_warning"] is None and 0.78 <= used / 1000 < 0.8, first
        llm.set_default(Reply(" ".join(["fine"] * 20)))
        outcomes: list[str] = []
        for _ in range(6):
            body = (await api.http.post("/api/v1/chat", json={"message": question}, headers=headers)).json()
            if body["status"] == "failed":
                assert body["error"]["code"] == "budget_exceeded", body
                outcomes.append("refused")
                break
            outcomes.append("warned" if body["budget_warning"] else "answered")
    assert "refused" in outcomes, outcomes
    assert "warned" in outcomes[: outcomes.index("refused")], outcomes


async def test_hard_stop_at_100_percent_sends_no_model_request(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    async with running_platform(budget_settings, temporal_client) as api:
        headers = await api.auth("budget-stop")
        llm.set_default(Reply(REPLY_820_WORDS))
        for message in ("one", "two"):
            body = (await api.http.post("/api/v1/chat", json={"message": message}, headers=headers)).json()
            assert body["status"] == "completed"
        used, _ = await _recorded(budget_settings.database_url or "", "budget-stop")
        assert used + _bound("three") + MIN_OUTPUT_TOKENS > 1000  # no room left for another call
        requests_before = llm.request_count

        refused = (await api.http.post("/api/v1/chat", json={"message": "three"}, headers=headers)).json()
        assert refused["status"] == "failed"
        assert refused["error"] == {
            "code": "budget_exceeded",
            "message": f"You have used your daily token budget ({used} of 1000 tokens);"
            " it resets at 00:00 UTC.",
        }
        async with api.http.stream(
            "POST", "/api/v1/chat/stream", json={"message": "four"}, headers=headers
        ) as resp:
            events = await collect(resp)
        assert events[-1].event == "error" and events[-1].data["code"] == "budget_exceeded"
        assert llm.request_count == requests_before  # refused before any model request
        assert await _recorded(budget_settings.database_url or "", "budget-stop") == (used, 0)

        # An admin raises the budget: the next message goes through.
        admin = {"Authorization": f"Bearer {await api.token('budget-admin', roles=['OrgAdmin'])}"}
        raised = await api.http.put(
            "/api/v1/admin/budgets/budget-stop",
            json={"daily_tokens": 5000, "monthly_tokens": None},
            headers=admin,
        )
        assert raised.status_code == 200, raised.text
        again = (await api.http.post("/api/v1/chat", json={"message": "five"}, headers=headers)).json()
        assert again["status"] == "completed"
        assert llm.request_count == requests_before + 1


async def test_usage_of_a_running_platform_is_unaffected_without_a_model(
    budget_settings: Settings, temporal_client: Client
) -> None:
    """No model configured: no tokens, no reservation, and no refusal even at a tiny budget."""
    settings = budget_settings.model_copy(
        update={"llm_base_url": None, "llm_model": None, "budget_daily_tokens": 1}
    )
    async with running_platform(settings, temporal_client) as api:
        headers = await api.auth("budget-nomodel")
        body = (await api.http.post("/api/v1/chat", json={"message": "hi"}, headers=headers)).json()
        assert body["status"] == "completed" and body["notice"] == "llm_not_configured"
        assert await _recorded(settings.database_url or "", "budget-nomodel") == (0, 0)


async def _records(database_url: str, user_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, turn_id, model, prompt_tokens, completion_tokens, cost FROM usage_records"
            " WHERE user_id = $1 ORDER BY created_at",
            user_id,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def test_each_model_call_of_a_tool_turn_is_reserved_and_recorded(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    settings = budget_settings.model_copy(
        update={"tool_allowed_hosts": ["127.0.0.1"], "budget_daily_tokens": 100_000}
    )
    with CounterMcpServer() as counter:
        async with running_platform(settings, temporal_client) as api:
            admin = {"Authorization": f"Bearer {await api.token('budget-tools-admin', roles=['OrgAdmin'])}"}
            added = await api.http.post(
                "/api/v1/admin/tools",
                json={"name": "counter", "transport": "http", "url": counter.url},
                headers=admin,
                timeout=90,
            )
            assert added.status_code == 201, added.text
            headers = await api.auth("budget-tools")
            llm.enqueue(
                ToolCalls([ToolCall("counter__record_event", json.dumps({"name": "budget"}))]),
                Reply("Recorded it."),
            )
            body = (await api.http.post("/api/v1/chat", json={"message": "record"}, headers=headers)).json()
    assert body["status"] == "completed", body
    records = await _records(settings.database_url or "", "budget-tools")
    assert len(records) == 2 and len({r["id"] for r in records}) == 2  # one reservation per call
    assert {r["turn_id"] for r in records} == {body["turn_id"]}
    assert sum(r["prompt_tokens"] for r in records) == body["usage"]["prompt_tokens"]
    assert sum(r["completion_tokens"] for r in records) == body["usage"]["completion_tokens"]
    # The first call offered the tool; its reservation bound the prompt with the tool's schema.
    first, second = llm.requests[-2:]
    assert first["tools"] and second["max_completion_tokens"] == 1000
    assert await _recorded(settings.database_url or "", "budget-tools") == (
        body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"],
        0,
    )


async def test_a_failed_primary_releases_and_the_fallback_is_reserved_anew(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    settings = budget_settings.model_copy(update={"llm_fallback_model": "fake-small"})
    async with running_platform(settings, temporal_client) as api:
        headers = await api.auth("budget-fallback")
        llm.enqueue(*(Error(status=500, message="down") for _ in range(3)), Reply("from the fallback"))
        body = (await api.http.post("/api/v1/chat", json={"message": "hi"}, headers=headers)).json()
    assert body["status"] == "completed", body
    [record] = await _records(settings.database_url or "", "budget-fallback")
    assert record["model"] == "fake-small"
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        body["usage"]["prompt_tokens"],
        body["usage"]["completion_tokens"],
    )
    assert float(record["cost"]) == 0.0  # the price table names fake-model only
    assert (await _recorded(settings.database_url or "", "budget-fallback"))[1] == 0
