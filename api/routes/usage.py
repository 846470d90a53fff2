"""Token usage, cost and budgets (docs/budgets.md).

- ``GET /api/v1/usage``: the caller's own tokens, cost, budget and what is left,
  today and this month, by model.
- ``GET /api/v1/admin/usage``: usage per user and model (governance data: the
  ``view_audit_logs`` permission).
- ``GET|PUT|DELETE /api/v1/admin/budgets/{user_id}``: a user's effective budget, a
  per-user override, back to the defaults (``manage_budgets``: OrgAdmin; audited).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import AuditViewer, BudgetAdmin, PrincipalDep, ResourcesDep
from api.errors import ApiError, request_id_of
from api.text_guard import RequestModel
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.principal import Principal
from core.policy import budget
from core.policy.budget import BudgetLimits, BudgetPeriod
from infra.db.usage_repo import ModelUsage, UsageRepository
from infra.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["usage"])

UserIdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._@:-]+$")]
#: The longest range one admin usage query may span.
_MAX_RANGE_DAYS = 366


# ------------------------------------------------------------------ schemas
class ModelUsageView(BaseModel):
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


class PeriodUsage(BaseModel):
    period: BudgetPeriod
    #: The first UTC day of the period.
    start: date
    resets_at: datetime
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    #: The budget (null: unlimited).
    limit_tokens: int | None
    #: Tokens held by model calls in progress (they count against the budget until settled).
    reserved_tokens: int
    #: What is left (null: unlimited).
    remaining_tokens: int | None
    by_model: list[ModelUsageView]


class UsageView(BaseModel):
    user_id: str
    currency: str
    warning_ratio: float
    #: ``override`` when an admin set this user's budget, else ``default``.
    budget_source: str
    today: PeriodUsage
    this_month: PeriodUsage


class UserUsageRow(ModelUsageView):
    user_id: str


class AdminUsageView(BaseModel):
    first_day: date
    last_day: date
    currency: str
    usage: list[UserUsageRow]
    total_tokens: int
    total_cost: float


class BudgetRequest(RequestModel):
    #: Tokens per UTC day; null: unlimited.
    daily_tokens: int | None = Field(ge=1, le=10**12)
    #: Tokens per UTC calendar month; null: unlimited.
    monthly_tokens: int | None = Field(ge=1, le=10**13)


class BudgetView(BaseModel):
    user_id: str
    daily_tokens: int | None
    monthly_tokens: int | None
    source: str
    updated_by: str | None = None
    updated_at: datetime | None = None


# ------------------------------------------------------------------ helpers
def _repo(resources: ResourcesDep) -> UsageRepository:
    return UsageRepository(resources.pool)


def _defaults(settings: Settings) -> BudgetLimits:
    return BudgetLimits(daily=settings.budget_daily_tokens, monthly=settings.budget_monthly_tokens)


def _model_view(usage: ModelUsage) -> ModelUsageView:
    return ModelUsageView(
        model=usage.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cost=float(usage.cost),
    )


def _period(
    period: BudgetPeriod, parts: list[ModelUsage], *, limits: BudgetLimits, reserved: int, now: datetime
) -> PeriodUsage:
    prompt = sum(p.prompt_tokens for p in parts)
    completion = sum(p.completion_tokens for p in parts)
    limit = limits.of(period)
    return PeriodUsage(
        period=period,
        start=budget.period_start(period, now),
        resets_at=budget.resets_at(period, now),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost=float(sum((p.cost for p in parts), start=budget.cost(0, 0, None))),
        limit_tokens=limit,
        reserved_tokens=reserved,
        remaining_tokens=budget.remaining(limit, prompt + completion, reserved),
        by_model=[_model_view(p) for p in parts],
    )


async def _audit(
    request: Request,
    resources: ResourcesDep,
    admin: Principal,
    event: AuditEvent,
    user_id: str,
    **details: object,
) -> None:
    await resources.audit.record(
        AuditEntry(
            event=event,
            user_id=admin.user_id,
            resource_type="budget",
            resource_id=user_id,
            details=dict(details),
            request_id=request_id_of(request),
        )
    )


# ------------------------------------------------------------------- routes
@router.get("/usage", operation_id="get_my_usage", response_model=UsageView)
async def get_my_usage(principal: PrincipalDep, resources: ResourcesDep) -> UsageView:
    """My tokens and cost today and this month, by model, with my budget and what is left."""
    settings = resources.settings
    repo = _repo(resources)
    summary = await repo.summary(principal.user_id, defaults=_defaults(settings))
    standing = summary.standing
    override = await repo.get_override(principal.user_id)
    return UsageView(
        user_id=principal.user_id,
        currency=settings.cost_currency,
        warning_ratio=settings.budget_warning_ratio,
        budget_source="override" if override else "default",
        today=_period(
            "daily", summary.today, limits=standing.limits, reserved=standing.reserved, now=standing.now
        ),
        this_month=_period(
            "monthly",
            summary.this_month,
            limits=standing.limits,
            reserved=standing.reserved,
            now=standing.now,
        ),
    )


@router.get("/admin/usage", operation_id="admin_usage", response_model=AdminUsageView)
async def admin_usage(
    principal: AuditViewer,
    resources: ResourcesDep,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    first_day: Annotated[
        date | None, Query(alias="from", description="first UTC day (default: 1st of this month)")
    ] = None,
    last_day: Annotated[
        date | None, Query(alias="to", description="last UTC day, inclusive (default: today)")
    ] = None,
) -> AdminUsageView:
    """Usage and cost per user and model over a range of UTC days."""
    today = budget.utc_day(datetime.now(UTC))
    last = last_day or today
    first = first_day or last.replace(day=1)
    if first > last:
        raise ApiError(ErrorCode.INVALID_REQUEST, "'from' is after 'to'")
    if last - first > timedelta(days=_MAX_RANGE_DAYS):
        raise ApiError(ErrorCode.INVALID_REQUEST, f"the range may span at most {_MAX_RANGE_DAYS} days")
    rows = await _repo(resources).usage_by_user(first_day=first, last_day=last, user_id=user_id)
    views = [UserUsageRow(user_id=r.user_id, **_model_view(r).model_dump()) for r in rows]
    return AdminUsageView(
        first_day=first,
        last_day=last,
        currency=resources.settings.cost_currency,
        usage=views,
        total_tokens=sum(r.total_tokens for r in rows),
        total_cost=float(sum((r.cost for r in rows), start=budget.cost(0, 0, None))),
    )


@router.get("/admin/budgets/{user_id}", operation_id="get_user_budget", response_model=BudgetView)
async def get_user_budget(user_id: UserIdPath, principal: BudgetAdmin, resources: ResourcesDep) -> BudgetView:
    """A user's effective budget: the override, else the defaults."""
    override = await _repo(resources).get_override(user_id)
    if override is None:
        settings = resources.settings
        return BudgetView(
            user_id=user_id,
            daily_tokens=settings.budget_daily_tokens,
            monthly_tokens=settings.budget_monthly_tokens,
            source="default",
        )
    return BudgetView(
        user_id=user_id,
        daily_tokens=override.daily_tokens,
        monthly_tokens=override.monthly_tokens,
        source="override",
        updated_by=override.updated_by,
        updated_at=override.updated_at,
    )


@router.put("/admin/budgets/{user_id}", operation_id="set_user_budget", response_model=BudgetView)
async def set_user_budget(
    user_id: UserIdPath,
    body: BudgetRequest,
    request: Request,
    principal: BudgetAdmin,
    resources: ResourcesDep,
) -> BudgetView:
    """Set a user's daily and monthly token budgets (null: unlimited). Takes effect at the
    user's next model call; calls already holding a reservation finish."""
    repo = _repo(resources)
    previous = await repo.get_override(user_id)
    override = await repo.set_override(
        user_id,
        daily_tokens=body.daily_tokens,
        monthly_tokens=body.monthly_tokens,
        updated_by=principal.user_id,
    )
    await _audit(
        request,
        resources,
        principal,
        AuditEvent.ADMIN_BUDGET_SET,
        user_id,
        daily_tokens=body.daily_tokens,
        monthly_tokens=body.monthly_tokens,
        previous=None
        if previous is None
        else {"daily_tokens": previous.daily_tokens, "monthly_tokens": previous.monthly_tokens},
    )
    return BudgetView(
        user_id=user_id,
        daily_tokens=override.daily_tokens,
        monthly_tokens=override.monthly_tokens,
        source="override",
        updated_by=override.updated_by,
        updated_at=override.updated_at,
    )


@router.delete("/admin/budgets/{user_id}", operation_id="clear_user_budget", status_code=204)
async def clear_user_budget(
    user_id: UserIdPath, request: Request, principal: BudgetAdmin, resources: ResourcesDep
) -> Response:
    """Remove a user's override: the default budgets apply again (idempotent; a removal
    is audited when there was an override)."""
    if await _repo(resources).clear_override(user_id):
        await _audit(request, resources, principal, AuditEvent.ADMIN_BUDGET_CLEARED, user_id)
    return Response(status_code=204)
