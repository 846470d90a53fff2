"""Prometheus metrics of model usage and budgets: tokens, cost, budget refusals.

They are counted by the budget activities, so in the worker process; ``/metrics`` is
served by the API process only (docs/api.md#metrics), which therefore does not show them."""

from __future__ import annotations

from prometheus_client import Counter

LLM_TOKENS = Counter("keel_llm_tokens_total", "Model tokens recorded against budgets", ["model", "kind"])
LLM_COST = Counter("keel_llm_cost_total", "Cost of recorded model usage (KEEL_COST_CURRENCY)", ["model"])
BUDGET_REFUSALS = Counter("keel_budget_refusals_total", "Model calls refused by a token budget", ["period"])
