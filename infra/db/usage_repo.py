"""Token budgets, reservations and usage in Postgres (migration 0006, docs/budgets.md).

A reservation and a settlement each run in one transaction holding the user's
advisory lock, so concurrent calls of one user see each other's reservations and
can never together grant more than the budget. A settlement is idempotent by
reservation id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import asyncpg

from core.policy import budget
from core.policy.budget import BudgetLimits, Price, Reservation, Standing


@dataclass(frozen=True)
class ReserveOutcome:
    reservation: Reservation
    standing: Standing
    prompt_tokens_bound: int
    #: Tokens now held (0 when refused).
    reserved_tokens: int


@dataclass(frozen=True)
class SettleOutcome:
    recorded: bool
    standing: Standing
    #: What was recorded now (0 when nothing was).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass(frozen=True)
class ModelUsage:
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class UserModelUsage(ModelUsage):
    user_id: str


@dataclass(frozen=True)
class BudgetOverride:
    user_id: str
    daily_tokens: int | None
    monthly_tokens: int | None
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class UsageSummary:
    standing: Standing
    today: list[ModelUsage]
    this_month: list[ModelUsage]


def _lock_key(user_id: str) -> str:
    return f"keel-budget:{user_id}"


class UsageRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------ reserve/settle
    async def reserve(
        self,
        *,
        reservation_id: str,
        user_id: str,
        prompt_bound: int,
        output_allowance: int,
        defaults: BudgetLimits,
        ttl_s: int,
        min_output: int = budget.MIN_OUTPUT_TOKENS,
    ) -> ReserveOutcome:
        """Hold ``prompt_bound + output`` tokens if every limit has room (see
        :func:`core.policy.budget.decide`). Repeating a granted reservation id answers
        the same grant without holding more."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _lock_key(user_id))
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            existing = await conn.fetchrow(
                "SELECT tokens, prompt_tokens_bound, output_tokens FROM budget_reservations"
                " WHERE id = $1 AND user_id = $2",
                reservation_id,
                user_id,
            )
            await conn.execute(
                "DELETE FROM budget_reservations WHERE user_id = $1 AND expires_at <= $2", user_id, now
            )
            standing = await _standing(conn, user_id, now=now, defaults=defaults)
            if existing is not None:
                granted = Reservation(output_tokens=int(existing["output_tokens"]))
                return ReserveOutcome(
                    granted, standing, int(existing["prompt_tokens_bound"]), int(existing["tokens"])
                )
            decision = budget.decide(
                standing, prompt_bound=prompt_bound, output_allowance=output_allowance, min_output=min_output
            )
            if decision.output_tokens is None:
                return ReserveOutcome(decision, standing, prompt_bound, 0)
            tokens = prompt_bound + decision.output_tokens
            await conn.execute(
                "INSERT INTO budget_reservations"
                " (id, user_id, tokens, prompt_tokens_bound, output_tokens, created_at, expires_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                reservation_id,
                user_id,
                tokens,
                prompt_bound,
                decision.output_tokens,
                now,
                now + timedelta(seconds=ttl_s),
            )
            return ReserveOutcome(decision, standing, prompt_bound, tokens)

    async def settle(
        self,
        *,
        reservation_id: str,
        user_id: str,
        session_id: str,
        turn_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        price: Price | None,
        currency: str,
        defaults: BudgetLimits,
        charge_reservation_if_unreported: bool = False,
    ) -> SettleOutcome:
        """Release the reservation and record the real usage, once per reservation id.

        ``charge_reservation_if_unreported``: a successful call whose server reported no
        usage is charged the reserved amount (its upper bound) rather than nothing.
        The cost comes from ``price`` (0 when the model has none).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _lock_key(user_id))
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            held = await conn.fetchrow(
                "DELETE FROM budget_reservations WHERE id = $1 AND user_id = $2"
                " RETURNING prompt_tokens_bound, output_tokens",
                reservation_id,
                user_id,
            )
            if (
                charge_reservation_if_unreported
                and held is not None
                and prompt_tokens + completion_tokens == 0
            ):
                prompt_tokens = int(held["prompt_tokens_bound"])
                completion_tokens = int(held["output_tokens"])
            recorded = False
            cost = budget.cost(prompt_tokens, completion_tokens, price)
            if prompt_tokens + completion_tokens > 0:
                inserted = await conn.fetchval(
                    "INSERT INTO usage_records (id, user_id, session_id, turn_id, model, prompt_tokens,"
                    " completion_tokens, cost, currency, created_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                    reservation_id,
                    user_id,
                    session_id,
                    turn_id,
                    model,
                    prompt_tokens,
                    completion_tokens,
                    cost,
                    currency,
                    now,
                )
                if inserted is not None:
                    recorded = True
                    await conn.execute(
                        "INSERT INTO usage_daily"
                        " (user_id, day, model, prompt_tokens, completion_tokens, cost)"
                        " VALUES ($1, $2, $3, $4, $5, $6)"
                        " ON CONFLICT (user_id, day, model) DO UPDATE SET"
                        " prompt_tokens = usage_daily.prompt_tokens + EXCLUDED.prompt_tokens,"
                        " completion_tokens = usage_daily.completion_tokens + EXCLUDED.completion_tokens,"
                        " cost = usage_daily.cost + EXCLUDED.cost",
                        user_id,
                        budget.utc_day(now),
                        model,
                        prompt_tokens,
                        completion_tokens,
                        cost,
                    )
            standing = await _standing(conn, user_id, now=now, defaults=defaults)
            if not recorded:
                return SettleOutcome(recorded=False, standing=standing)
            return SettleOutcome(
                recorded=True,
                standing=standing,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost=cost,
            )

    # ------------------------------------------------------------------ reads
    async def summary(self, user_id: str, *, defaults: BudgetLimits) -> UsageSummary:
        """A user's standing now, with today's and this month's usage by model."""
        async with self._pool.acquire() as conn:
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            standing = await _standing(conn, user_id, now=now, defaults=defaults)
            rows = await conn.fetch(
                "SELECT model, day = $3 AS today, SUM(prompt_tokens) AS prompt_tokens,"
                " SUM(completion_tokens) AS completion_tokens, SUM(cost) AS cost"
                " FROM usage_daily WHERE user_id = $1 AND day >= $2 AND day <= $3"
                " GROUP BY model, day = $3 ORDER BY model",
                user_id,
                budget.month_start(now),
                budget.utc_day(now),
            )
        month: dict[str, ModelUsage] = {}
        today: list[ModelUsage] = []
        for row in rows:
            part = ModelUsage(
                model=row["model"],
                prompt_tokens=int(row["prompt_tokens"]),
                completion_tokens=int(row["completion_tokens"]),
                cost=Decimal(row["cost"]),
            )
            if row["today"]:
                today.append(part)
            seen = month.get(part.model)
            month[part.model] = (
                part
                if seen is None
                else ModelUsage(
                    model=part.model,
                    prompt_tokens=seen.prompt_tokens + part.prompt_tokens,
                    completion_tokens=seen.completion_tokens + part.completion_tokens,
                    cost=seen.cost + part.cost,
                )
            )
        return UsageSummary(standing=standing, today=today, this_month=sorted(month.values(), key=_by_model))

    async def usage_by_user(
        self, *, first_day: date, last_day: date, user_id: str | None = None
    ) -> list[UserModelUsage]:
        """Usage per user and model over ``first_day``..``last_day`` (UTC days, inclusive)."""
        rows = await self._pool.fetch(
            "SELECT user_id, model, SUM(prompt_tokens) AS prompt_tokens,"
            " SUM(completion_tokens) AS completion_tokens, SUM(cost) AS cost FROM usage_daily"
            " WHERE day >= $1 AND day <= $2 AND ($3::text IS NULL OR user_id = $3)"
            " GROUP BY user_id, model ORDER BY user_id, model",
            first_day,
            last_day,
            user_id,
        )
        return [
            UserModelUsage(
                user_id=r["user_id"],
                model=r["model"],
                prompt_tokens=int(r["prompt_tokens"]),
                completion_tokens=int(r["completion_tokens"]),
                cost=Decimal(r["cost"]),
            )
            for r in rows
        ]

    async def reserved_tokens(self, user_id: str) -> int:
        """Tokens held by live reservations (for tests and the usage view)."""
        value = await self._pool.fetchval(
            "SELECT COALESCE(SUM(tokens), 0) FROM budget_reservations"
            " WHERE user_id = $1 AND expires_at > clock_timestamp()",
            user_id,
        )
        return int(value)

    # --------------------------------------------------------------- overrides
    async def get_override(self, user_id: str) -> BudgetOverride | None:
        row = await self._pool.fetchrow(
            "SELECT user_id, daily_tokens, monthly_tokens, updated_by, updated_at FROM budgets"
            " WHERE user_id = $1",
            user_id,
        )
        return BudgetOverride(**dict(row)) if row else None

    async def set_override(
        self, user_id: str, *, daily_tokens: int | None, monthly_tokens: int | None, updated_by: str
    ) -> BudgetOverride:
        row = await self._pool.fetchrow(
            "INSERT INTO budgets (user_id, daily_tokens, monthly_tokens, updated_by, updated_at)"
            " VALUES ($1, $2, $3, $4, now()) ON CONFLICT (user_id) DO UPDATE SET"
            " daily_tokens = EXCLUDED.daily_tokens, monthly_tokens = EXCLUDED.monthly_tokens,"
            " updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at"
            " RETURNING user_id, daily_tokens, monthly_tokens, updated_by, updated_at",
            user_id,
            daily_tokens,
            monthly_tokens,
            updated_by,
        )
        assert row is not None
        return BudgetOverride(**dict(row))

    async def clear_override(self, user_id: str) -> bool:
        """True when an override existed (the user is back on the defaults)."""
        status = await self._pool.execute("DELETE FROM budgets WHERE user_id = $1", user_id)
        return str(status).endswith(" 1")


def _by_model(usage: ModelUsage) -> str:
    return usage.model


async def _standing(
    conn: asyncpg.Connection, user_id: str, *, now: datetime, defaults: BudgetLimits
) -> Standing:
    override = await conn.fetchrow(
        "SELECT daily_tokens, monthly_tokens FROM budgets WHERE user_id = $1", user_id
    )
    limits = (
        BudgetLimits(daily=override["daily_tokens"], monthly=override["monthly_tokens"])
        if override is not None
        else defaults
    )
    today = budget.utc_day(now)
    used = await conn.fetchrow(
        "SELECT COALESCE(SUM(prompt_tokens + completion_tokens) FILTER (WHERE day = $3), 0) AS today,"
        " COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS month"
        " FROM usage_daily WHERE user_id = $1 AND day >= $2 AND day <= $3",
        user_id,
        budget.month_start(now),
        today,
    )
    reserved = await conn.fetchval(
        "SELECT COALESCE(SUM(tokens), 0) FROM budget_reservations WHERE user_id = $1 AND expires_at > $2",
        user_id,
        now,
    )
    return Standing(
        limits=limits,
        used_today=int(used["today"]),
        used_this_month=int(used["month"]),
        reserved=int(reserved),
        now=now,
    )
