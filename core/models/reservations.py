"""Payloads of the budget activities (reserve before a model call, settle after it).

Only ids and numbers cross the boundary: the reserve activity renders the prompt
itself (the same way the LLM activity does) to bound its tokens.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.models.budget import BudgetRefusal, BudgetWarning
from core.models.chat import LlmCallInput


class ReserveBudgetInput(BaseModel):
    #: Chosen by the workflow (``workflow.uuid4``): a retried reservation is the same one.
    reservation_id: str
    user_id: str
    #: The input the LLM activity will receive (without the granted ``max_tokens``).
    call: LlmCallInput


class BudgetGrant(BaseModel):
    reservation_id: str
    allowed: bool
    #: Tokens held for this call: ``prompt_tokens_bound + max_output_tokens`` (0 when nothing is held).
    reserved_tokens: int = 0
    prompt_tokens_bound: int = 0
    #: The output allowance to pass to the model (None: no model call is made).
    max_output_tokens: int | None = None
    refusal: BudgetRefusal | None = None
    warning: BudgetWarning | None = None


class SettleBudgetInput(BaseModel):
    reservation_id: str
    user_id: str
    session_id: str
    turn_id: str
    #: False when the model call failed or was cancelled: the reservation is released.
    succeeded: bool = True
    model: str | None = None
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class SettleBudgetResult(BaseModel):
    #: True when this call recorded usage now (False for a repeated settle or a release).
    recorded: bool = False
    warning: BudgetWarning | None = None
