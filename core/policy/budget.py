"""Token budget maths: windows, what is left, the warning threshold, refusals and cost.

Pure and deterministic: the caller passes ``now`` (a timezone-aware instant) and the
numbers it read under the user's budget lock. Days and months are UTC calendar
periods: a daily budget resets at 00:00 UTC, a monthly one at 00:00 UTC on the 1st.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

BudgetPeriod = Literal["daily", "monthly"]

#: The smallest output allowance worth starting a model call for: below it the call is refused.
MIN_OUTPUT_TOKENS = 64
_COST_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class BudgetLimits:
    """Token limits per period; ``None`` is unlimited."""

    daily: int | None
    monthly: int | None

    def of(self, period: BudgetPeriod) -> int | None:
        return self.daily if period == "daily" else self.monthly


@dataclass(frozen=True)
class Standing:
    """A user's position at ``now``: settled usage per period and live reservations."""

    limits: BudgetLimits
    used_today: int
    used_this_month: int
    reserved: int
    now: datetime

    def used(self, period: BudgetPeriod) -> int:
        return self.used_today if period == "daily" else self.used_this_month


@dataclass(frozen=True)
class Reservation:
    """The outcome of a reservation request: ``output_tokens`` is the granted output
    allowance (None when refused); ``refused_by`` the period whose limit refused it."""

    output_tokens: int | None
    refused_by: BudgetPeriod | None = None

    @property
    def allowed(self) -> bool:
        return self.output_tokens is not None


@dataclass(frozen=True)
class Alert:
    period: BudgetPeriod
    used: int
    limit: int
    ratio: float


@dataclass(frozen=True)
class Price:
    prompt_per_1k: Decimal
    completion_per_1k: Decimal


# ------------------------------------------------------------------ windows
def utc_day(now: datetime) -> date:
    return now.astimezone(UTC).date()


def month_start(now: datetime) -> date:
    return utc_day(now).replace(day=1)


def period_start(period: BudgetPeriod, now: datetime) -> date:
    return utc_day(now) if period == "daily" else month_start(now)


def resets_at(period: BudgetPeriod, now: datetime) -> datetime:
    """When the period that contains ``now`` ends (the next 00:00 UTC, or the next 1st)."""
    day = utc_day(now)
    if period == "daily":
        nxt = day + timedelta(days=1)
    else:
        nxt = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    return datetime.combine(nxt, time(0), tzinfo=UTC)


# ---------------------------------------------------------------- remaining
def remaining(limit: int | None, used: int, reserved: int) -> int | None:
    """Tokens still free in a period (never negative); ``None`` when unlimited."""
    if limit is None:
        return None
    return max(0, limit - used - reserved)


def decide(
    standing: Standing, *, prompt_bound: int, output_allowance: int, min_output: int = MIN_OUTPUT_TOKENS
) -> Reservation:
    """Grant ``prompt_bound + output`` tokens when every limit has room for it.

    The full ``output_allowance`` when there is room; else a smaller one, down to
    ``min_output``; else a refusal by the tightest period. ``prompt_bound`` is the
    prompt's token estimate (activities.token_estimate).
    """
    room: int | None = None
    tightest: BudgetPeriod | None = None
    for period in ("daily", "monthly"):
        left = remaining(standing.limits.of(period), standing.used(period), standing.reserved)
        if left is not None and (room is None or left < room):
            room, tightest = left, period
    if room is None:
        return Reservation(output_tokens=output_allowance)
    wanted_min = min(min_output, output_allowance)
    if room < prompt_bound + wanted_min:
        return Reservation(output_tokens=None, refused_by=tightest)
    return Reservation(output_tokens=min(output_allowance, room - prompt_bound))


def warning(standing: Standing, *, ratio: float) -> Alert | None:
    """The period whose settled usage is the largest share of its limit, when that share
    is at least ``ratio`` (e.g. 0.8); ``None`` otherwise."""
    worst: Alert | None = None
    for period in ("daily", "monthly"):
        limit = standing.limits.of(period)
        if not limit:
            continue
        used = standing.used(period)
        share = used / limit
        if share >= ratio and (worst is None or share > worst.ratio):
            worst = Alert(period=period, used=used, limit=limit, ratio=round(share, 4))
    return worst


def refusal_message(period: BudgetPeriod, *, used: int, limit: int, now: datetime) -> str:
    if period == "daily":
        return f"You have used your daily token budget ({used} of {limit} tokens); it resets at 00:00 UTC."
    reset = resets_at("monthly", now)
    return (
        f"You have used your monthly token budget ({used} of {limit} tokens); "
        f"it resets on {reset:%Y-%m-%d} at 00:00 UTC."
    )


def warning_message(warn: Alert, *, now: datetime) -> str:
    reset = "at 00:00 UTC" if warn.period == "daily" else f"on {resets_at('monthly', now):%Y-%m-%d}"
    return (
        f"You have used {round(warn.ratio * 100)}% of your {warn.period} token budget "
        f"({warn.used} of {warn.limit} tokens); it resets {reset}."
    )


# --------------------------------------------------------------------- cost
def price_for(model: str | None, prices: dict[str, dict[str, float]]) -> Price | None:
    """The model's price: an exact entry, else the longest entry the name starts with
    (``gpt-4o`` prices ``gpt-4o-2024-08-06``); ``None`` when the table has none."""
    if not model:
        return None
    entry = prices.get(model)
    if entry is None:
        matches = [key for key in prices if model.startswith(key)]
        if not matches:
            return None
        entry = prices[max(matches, key=len)]
    return Price(
        prompt_per_1k=Decimal(str(entry.get("prompt_per_1k", 0.0))),
        completion_per_1k=Decimal(str(entry.get("completion_per_1k", 0.0))),
    )


def cost(prompt_tokens: int, completion_tokens: int, price: Price | None) -> Decimal:
    """What a call cost, to 8 decimal places (0 when the model has no price)."""
    if price is None:
        return Decimal(0).quantize(_COST_QUANTUM)
    total = (
        Decimal(prompt_tokens) * price.prompt_per_1k + Decimal(completion_tokens) * price.completion_per_1k
    ) / 1000
    return total.quantize(_COST_QUANTUM, rounding=ROUND_HALF_UP)
