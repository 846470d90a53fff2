"""Token budget payloads shown to users: the 80 % warning and the 100 % refusal.

Fields are added, never renamed. The maths behind them is :mod:`core.policy.budget`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

BudgetPeriodName = Literal["daily", "monthly"]


class BudgetWarning(BaseModel):
    """Usage reached the warning ratio of a budget (in the turn result and the
    ``budget.warning`` stream event)."""

    period: BudgetPeriodName
    used_tokens: int
    limit_tokens: int
    #: used / limit, e.g. 0.83
    ratio: float
    resets_at: datetime
    message: str


class BudgetRefusal(BaseModel):
    """A model call was refused: the budget of ``period`` has no room left for it."""

    period: BudgetPeriodName
    used_tokens: int
    limit_tokens: int
    resets_at: datetime
    message: str
