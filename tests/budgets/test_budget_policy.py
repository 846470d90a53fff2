"""Budget maths (core.policy.budget) and the prompt token estimate (activities.token_estimate)."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from agent_framework import Content, Message

from activities.token_estimate import (
    ASCII_CHARS_PER_TOKEN,
    PER_MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    prompt_token_estimate,
)
from core.policy import budget
from core.policy.budget import BudgetLimits, Standing

NOW = datetime(2026, 11, 29, 15, 30, tzinfo=UTC)


def _standing(
    daily: int | None, monthly: int | None, *, today: int = 0, month: int = 0, reserved: int = 0
) -> Standing:
    return Standing(
        limits=BudgetLimits(daily=daily, monthly=monthly),
        used_today=today,
        used_this_month=max(month, today),
        reserved=reserved,
        now=NOW,
    )


def test_windows_are_utc_days_and_months() -> None:
    late = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert budget.utc_day(late) == date(2026, 12, 31)
    assert budget.month_start(late) == date(2026, 12, 1)
    assert budget.resets_at("daily", late) == datetime(2027, 1, 1, tzinfo=UTC)
    assert budget.resets_at("monthly", late) == datetime(2027, 1, 1, tzinfo=UTC)
    assert budget.resets_at("monthly", NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    # An instant in another zone counts on its UTC day.
    from datetime import timedelta, timezone

    tokyo = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))
    assert budget.utc_day(tokyo) == date(2026, 11, 30)
    assert budget.period_start("monthly", tokyo) == date(2026, 11, 1)


def test_remaining_counts_reservations_and_never_goes_negative() -> None:
    assert budget.remaining(None, 10, 10) is None
    assert budget.remaining(100, 30, 20) == 50
    assert budget.remaining(100, 90, 20) == 0


def test_full_grant_when_there_is_room() -> None:
    decision = budget.decide(_standing(1000, None), prompt_bound=200, output_allowance=500)
    assert decision.allowed and decision.output_tokens == 500


def test_unlimited_grants_the_full_allowance() -> None:
    decision = budget.decide(_standing(None, None, today=10**9), prompt_bound=10**6, output_allowance=1024)
    assert decision.output_tokens == 1024


def test_smaller_output_allowance_near_the_limit() -> None:
    decision = budget.decide(_standing(1000, None, today=600), prompt_bound=200, output_allowance=500)
    assert decision.output_tokens == 200  # 1000 - 600 - 200


def test_refused_below_the_minimum_output() -> None:
    standing = _standing(1000, None, today=600, reserved=100)
    decision = budget.decide(standing, prompt_bound=200, output_allowance=500, min_output=64)
    assert decision.output_tokens == 100
    refused = budget.decide(standing, prompt_bound=260, output_allowance=500, min_output=64)
    assert not refused.allowed and refused.refused_by == "daily"


def test_tightest_period_refuses() -> None:
    standing = _standing(10_000, 50_000, today=100, month=49_900)
    refused = budget.decide(standing, prompt_bound=200, output_allowance=500)
    assert refused.refused_by == "monthly"
    granted = budget.decide(
        _standing(10_000, 50_000, today=100, month=49_000), prompt_bound=200, output_allowance=500
    )
    assert granted.output_tokens == 500


@pytest.mark.parametrize(
    ("used", "remaining_reserved", "prompt", "output"),
    [(0, 0, 10, 50), (500, 300, 90, 1024), (900, 0, 30, 64), (999, 0, 0, 1)],
)
def test_a_grant_never_exceeds_what_is_left(
    used: int, remaining_reserved: int, prompt: int, output: int
) -> None:
    standing = _standing(1000, None, today=used, reserved=remaining_reserved)
    decision = budget.decide(standing, prompt_bound=prompt, output_allowance=output, min_output=1)
    left = budget.remaining(1000, used, remaining_reserved)
    assert left is not None
    if decision.output_tokens is not None:
        assert prompt + decision.output_tokens <= left
    else:
        assert prompt + 1 > left


def test_warning_at_the_ratio_names_the_fullest_period() -> None:
    assert budget.warning(_standing(1000, None, today=799), ratio=0.8) is None
    alert = budget.warning(_standing(1000, 10_000, today=800, month=9_500), ratio=0.8)
    assert alert is not None
    assert (alert.period, alert.used, alert.limit, alert.ratio) == ("monthly", 9_500, 10_000, 0.95)
    assert budget.warning(_standing(None, None, today=10**9), ratio=0.8) is None


def test_messages() -> None:
    assert (
        budget.refusal_message("daily", used=1000, limit=1000, now=NOW)
        == "You have used your daily token budget (1000 of 1000 tokens); it resets at 00:00 UTC."
    )
    assert budget.refusal_message("monthly", used=5, limit=5, now=NOW).endswith(
        "it resets on 2026-12-01 at 00:00 UTC."
    )
    alert = budget.warning(_standing(1000, None, today=850), ratio=0.8)
    assert alert is not None
    assert "85% of your daily token budget (850 of 1000 tokens)" in budget.warning_message(alert, now=NOW)


def test_cost_from_the_price_table() -> None:
    prices = {
        "gpt-4o": {"prompt_per_1k": 0.0025, "completion_per_1k": 0.01},
        "gpt-4o-mini": {"prompt_per_1k": 0.00015, "completion_per_1k": 0.0006},
    }
    price = budget.price_for("gpt-4o-mini-2024-07-18", prices)  # the longest matching prefix
    assert price is not None and price.prompt_per_1k == Decimal("0.00015")
    assert budget.cost(2000, 1000, price) == Decimal("0.00090000")
    exact = budget.price_for("gpt-4o", prices)
    assert budget.cost(1234, 567, exact) == Decimal("0.00875500")
    assert budget.price_for("llama3", prices) is None
    assert budget.cost(1000, 1000, None) == Decimal(0)


def test_prompt_estimate_counts_ascii_by_ratio_other_characters_one_each() -> None:
    text = "Grüße, 世界"  # 5 ASCII characters, 4 others
    messages = [Message("user", [text])]
    expected = REQUEST_OVERHEAD + PER_MESSAGE_OVERHEAD + math.ceil(5 / ASCII_CHARS_PER_TOKEN) + 4
    assert prompt_token_estimate(messages) == expected


def test_prompt_estimate_covers_tool_calls_results_and_schemas() -> None:
    call = Content.from_function_call(call_id="call_1", name="search", arguments={"q": "naïve"})
    result = Content.from_function_result(call_id="call_1", result="found 3 documents")
    messages = [Message("system", ["Be brief."]), Message("assistant", [call]), Message("tool", [result])]
    schema = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
    without = prompt_token_estimate(messages)
    with_tools = prompt_token_estimate(messages, [schema])
    assert with_tools >= without + len(json.dumps(schema)) // 4
    # Every text the request carries is counted.
    carried = "Be brief." + "search" + "call_1" * 2 + "found 3 documents"
    assert without >= len(carried) / ASCII_CHARS_PER_TOKEN
