"""Prometheus metrics of model usage and budgets (DESIGN.md §8: LLM tokens and cost)."""

from __future__ import annotations

from prometheus_client import Counter

LLM_TOKENS = Counter("keel_llm_tokens_total", "Model tokens recorded against budgets", ["model", "kind"])
LLM_COST = Counter("keel_llm_cost_total", "Cost of recorded model usage (KEEL_COST_CURRENCY)", ["model"])
BUDGET_REFUSALS = Counter("keel_budget_refusals_total", "Model calls refused by a token budget", ["period"])
