"""Prometheus metrics of model usage and budgets: tokens, cost, budget refusals and warnings.

They are counted by the budget activities (warnings: by ``complete_turn``, once per turn
that ends with one), so in the worker process (docs/observability.md#metrics)."""

from __future__ import annotations

from prometheus_client import Counter

LLM_TOKENS = Counter("keel_llm_tokens_total", "Model tokens recorded against budgets", ["model", "kind"])
LLM_COST = Counter("keel_llm_cost_total", "Cost of recorded model usage (KEEL_COST_CURRENCY)", ["model"])
BUDGET_REFUSALS = Counter("keel_budget_refusals_total", "Model calls refused by a token budget", ["period"])
BUDGET_WARNINGS = Counter(
    "keel_budget_warnings_total",
    "Turns that ended with a token-budget warning (usage at the ratio)",
    ["period"],
)
