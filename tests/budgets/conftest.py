"""Budget tests run on a database of their own (per test), so that tools and documents
other tests registered never change the size of a prompt (and so of its token bound)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.settings import Settings
from tests.conftest import fresh_database


@pytest.fixture
async def own_database_url(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    async with fresh_database(service_urls[0], "keel_budget") as url:
        yield url


@pytest.fixture
async def pool(own_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from infra.db.pool import create_pool

    created = await create_pool(own_database_url, max_size=25)
    yield created
    await created.close()


@pytest.fixture
def budget_settings(settings: Settings, own_database_url: str) -> Settings:
    """Small, deterministic prompts: a short system prompt and a bounded answer."""
    return settings.model_copy(
        update={
            "database_url": own_database_url,
            "system_prompt": "Be brief.",
            "llm_max_output_tokens": 1000,
            "budget_daily_tokens": 1000,
            "budget_monthly_tokens": None,
            "llm_prices": {"fake-model": {"prompt_per_1k": 0.5, "completion_per_1k": 1.5}},
            "cost_currency": "EUR",
        }
    )
