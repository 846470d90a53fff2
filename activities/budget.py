"""Token budget activities, run by the chat workflow as local activities around each
model call: ``reserve_budget`` before it, ``settle_budget`` after it (docs/budgets.md).

The reservation renders the very request the LLM activity will send, with the
one :class:`activities.prompt.PromptBuilder` both share (which keeps it for that
call: the prompt is rendered once per model step), and bounds its prompt tokens
(:mod:`activities.token_estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from temporalio import activity

from core.models.budget import BudgetRefusal, BudgetWarning
from core.models.reservations import BudgetGrant, ReserveBudgetInput, SettleBudgetInput, SettleBudgetResult
from core.policy import budget
from core.policy.budget import BudgetLimits, Standing
from infra.db.usage_repo import UsageRepository
from infra.usage_metrics import BUDGET_REFUSALS, LLM_COST, LLM_TOKENS

from .prompt import PromptBuilder
from .token_estimate import prompt_token_estimate

log = structlog.get_logger(__name__)

#: The model name recorded when the server did not say which model answered.
UNKNOWN_MODEL = "unknown"


@dataclass(frozen=True)
class BudgetConfig:
    daily_tokens: int | None
    monthly_tokens: int | None
    warning_ratio: float = 0.8
    reservation_ttl_s: int = 3600
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    currency: str = "USD"
    min_output_tokens: int = budget.MIN_OUTPUT_TOKENS
    #: The model a call uses when it names none (for pricing a call whose server names none).
    default_model: str | None = None

    @property
    def defaults(self) -> BudgetLimits:
        return BudgetLimits(daily=self.daily_tokens, monthly=self.monthly_tokens)


class BudgetActivities:
    def __init__(self, *, repo: UsageRepository, prompts: PromptBuilder, config: BudgetConfig) -> None:
        self._repo = repo
        self._prompts = prompts
        self._config = config

    @activity.defn
    async def reserve_budget(self, inp: ReserveBudgetInput) -> BudgetGrant:
        if not self._prompts.model_configured:
            # No model: the answer is retrieval-only or a notice, and costs no tokens.
            return BudgetGrant(reservation_id=inp.reservation_id, allowed=True)
        # Kept for the model call this reservation is for (it then renders nothing itself).
        prepared = await self._prompts.prepare(inp.call, keep_as=inp.reservation_id)
        bound = prompt_token_estimate(prepared.messages, prepared.tool_schemas)
        config = self._config
        outcome = await self._repo.reserve(
            reservation_id=inp.reservation_id,
            user_id=inp.user_id,
            prompt_bound=bound,
            output_allowance=prepared.max_output_tokens,
            defaults=config.defaults,
            ttl_s=config.reservation_ttl_s,
            min_output=config.min_output_tokens,
        )
        standing = outcome.standing
        warning = _warning(standing, ratio=config.warning_ratio)
        decision = outcome.reservation
        if decision.output_tokens is None:
            self._prompts.forget(inp.reservation_id)  # no model call follows a refusal
            refusal = _refusal(standing, decision.refused_by or "daily")
            BUDGET_REFUSALS.labels(period=refusal.period).inc()
            log.info(
                "budget.refused",
                user_id=inp.user_id,
                turn_id=inp.call.turn_id,
                period=refusal.period,
                used=refusal.used_tokens,
                limit=refusal.limit_tokens,
                prompt_bound=bound,
            )
            return BudgetGrant(
                reservation_id=inp.reservation_id,
                allowed=False,
                prompt_tokens_bound=bound,
                refusal=refusal,
                warning=warning,
            )
        return BudgetGrant(
            reservation_id=inp.reservation_id,
            allowed=True,
            reserved_tokens=outcome.reserved_tokens,
            prompt_tokens_bound=outcome.prompt_tokens_bound,
            max_output_tokens=decision.output_tokens,
            warning=warning,
        )

    @activity.defn
    async def settle_budget(self, inp: SettleBudgetInput) -> SettleBudgetResult:
        config = self._config
        model = inp.model or config.default_model or UNKNOWN_MODEL
        prompt, completion = (inp.prompt_tokens, inp.completion_tokens) if inp.succeeded else (0, 0)
        outcome = await self._repo.settle(
            reservation_id=inp.reservation_id,
            user_id=inp.user_id,
            session_id=inp.session_id,
            turn_id=inp.turn_id,
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            price=budget.price_for(model, config.prices),
            currency=config.currency,
            defaults=config.defaults,
            charge_reservation_if_unreported=inp.succeeded,
        )
        if outcome.recorded:
            LLM_TOKENS.labels(model=model, kind="prompt").inc(outcome.prompt_tokens)
            LLM_TOKENS.labels(model=model, kind="completion").inc(outcome.completion_tokens)
            LLM_COST.labels(model=model).inc(float(outcome.cost))
        return SettleBudgetResult(
            recorded=outcome.recorded, warning=_warning(outcome.standing, ratio=config.warning_ratio)
        )


def _warning(standing: Standing, *, ratio: float) -> BudgetWarning | None:
    alert = budget.warning(standing, ratio=ratio)
    if alert is None:
        return None
    return BudgetWarning(
        period=alert.period,
        used_tokens=alert.used,
        limit_tokens=alert.limit,
        ratio=alert.ratio,
        resets_at=budget.resets_at(alert.period, standing.now),
        message=budget.warning_message(alert, now=standing.now),
    )


def _refusal(standing: Standing, period: budget.BudgetPeriod) -> BudgetRefusal:
    limit = standing.limits.of(period) or 0
    used = standing.used(period)
    return BudgetRefusal(
        period=period,
        used_tokens=used,
        limit_tokens=limit,
        resets_at=budget.resets_at(period, standing.now),
        message=budget.refusal_message(period, used=used, limit=limit, now=standing.now),
    )
