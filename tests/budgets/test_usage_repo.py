"""The budget repository against real Postgres: reservations, idempotent settlement,
expiry and the per-user lock."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg

from core.policy.budget import BudgetLimits, Price
from infra.db.usage_repo import ReserveOutcome, UsageRepository

DEFAULTS = BudgetLimits(daily=1000, monthly=None)
PRICE = Price(prompt_per_1k=Decimal("0.5"), completion_per_1k=Decimal("1.5"))


async def _reserve(
    repo: UsageRepository, reservation_id: str, user: str, *, prompt_bound: int, output_allowance: int
) -> ReserveOutcome:
    return await repo.reserve(
        reservation_id=reservation_id,
        user_id=user,
        prompt_bound=prompt_bound,
        output_allowance=output_allowance,
        defaults=DEFAULTS,
        ttl_s=600,
    )


async def _settle(
    repo: UsageRepository, reservation_id: str, user: str, prompt: int, completion: int
) -> bool:
    outcome = await repo.settle(
        reservation_id=reservation_id,
        user_id=user,
        session_id="s1",
        turn_id="t1",
        model="fake-model",
        prompt_tokens=prompt,
        completion_tokens=completion,
        price=PRICE,
        currency="EUR",
        defaults=DEFAULTS,
    )
    return outcome.recorded


async def test_settling_the_same_reservation_twice_counts_once(pool: asyncpg.Pool) -> None:
    repo = UsageRepository(pool)
    user = f"u-{uuid.uuid4().hex[:8]}"
    granted = await _reserve(repo, "r1", user, prompt_bound=100, output_allowance=200)
    assert granted.reserved_tokens == 300
    assert await repo.reserved_tokens(user) == 300

    assert await _settle(repo, "r1", user, 40, 60) is True
    assert await _settle(repo, "r1", user, 40, 60) is False  # an activity retry: recorded once
    assert await repo.reserved_tokens(user) == 0

    summary = await repo.summary(user, defaults=DEFAULTS)
    assert summary.standing.used_today == 100
    [row] = summary.today
    assert (row.prompt_tokens, row.completion_tokens, row.cost) == (40, 60, Decimal("0.11"))
    assert await pool.fetchval("SELECT count(*) FROM usage_records WHERE user_id = $1", user) == 1


async def test_a_repeated_reservation_holds_once(pool: asyncpg.Pool) -> None:
    repo = UsageRepository(pool)
    user = f"u-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        outcome = await _reserve(repo, "same", user, prompt_bound=50, output_allowance=100)
        assert outcome.reservation.output_tokens == 100
    assert await repo.reserved_tokens(user) == 150


async def test_a_failed_call_releases_its_reservation(pool: asyncpg.Pool) -> None:
    repo = UsageRepository(pool)
    user = f"u-{uuid.uuid4().hex[:8]}"
    await _reserve(repo, "r-fail", user, prompt_bound=500, output_allowance=400)
    refused = await _reserve(repo, "r-next", user, prompt_bound=100, output_allowance=100)
    assert refused.reservation.refused_by == "daily"  # 900 held: 100 left < 100 + 64
    assert await _settle(repo, "r-fail", user, 0, 0) is False
    again = await _reserve(repo, "r-next", user, prompt_bound=100, output_allowance=100)
    assert again.reservation.output_tokens == 100
    assert await pool.fetchval("SELECT count(*) FROM usage_records WHERE user_id = $1", user) == 0


async def test_unreported_usage_is_charged_the_reservation(pool: asyncpg.Pool) -> None:
    repo = UsageRepository(pool)
    user = f"u-{uuid.uuid4().hex[:8]}"
    await _reserve(repo, "r-silent", user, prompt_bound=70, output_allowance=30)
    outcome = await repo.settle(
        reservation_id="r-silent",
        user_id=user,
        session_id="s",
        turn_id="t",
        model="fake-model",
        prompt_tokens=0,
        completion_tokens=0,
        price=PRICE,
        currency="EUR",
        defaults=DEFAULTS,
        charge_reservation_if_unreported=True,
    )
    assert outcome.recorded and outcome.standing.used_today == 100


async def test_expired_reservations_stop_counting(pool: asyncpg.Pool) -> None:
    repo = UsageRepository(pool)
    user = f"u-{uuid.uuid4().hex[:8]}"
    await _reserve(repo, "r-old", user, prompt_bound=800, output_allowance=100)
    await pool.execute(
        "UPDATE budget_reservations SET expires_at = now() - interval '1 second' WHERE id = 'r-old'"
    )
    fresh = await _reserve(repo, "r-new", user, prompt_bound=800, output_allowance=100)
    assert fresh.reservation.output_tokens == 100
    assert await pool.fetchval("SELECT count(*) FROM budget_reservations WHERE user_id = $1", user) == 1


async def test_concurrent_reservations_never_hold_more_than_the_budget(pool: asyncpg.Pool) -> None:
    repo = UsageRepository(pool)
    user = f"u-{uuid.uuid4().hex[:8]}"
    outcomes = await asyncio.gather(
        *(_reserve(repo, f"c{n}", user, prompt_bound=90, output_allowance=150) for n in range(20))
    )
    held = sum(o.reserved_tokens for o in outcomes)
    assert held == await repo.reserved_tokens(user)
    assert held <= 1000
    granted = [o for o in outcomes if o.reservation.allowed]
    # 4 full grants (960 tokens) leave 40: too little for another prompt + 64.
    assert len(granted) == 4 and held == 960


async def test_overrides_replace_the_defaults(pool: asyncpg.Pool) -> None:
    repo = UsageRepository(pool)
    user = f"u-{uuid.uuid4().hex[:8]}"
    await repo.set_override(user, daily_tokens=None, monthly_tokens=500, updated_by="admin")
    summary = await repo.summary(user, defaults=DEFAULTS)
    assert summary.standing.limits == BudgetLimits(daily=None, monthly=500)
    assert await repo.clear_override(user) is True
    assert await repo.clear_override(user) is False
    assert (await repo.summary(user, defaults=DEFAULTS)).standing.limits == DEFAULTS
