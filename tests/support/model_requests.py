"""Waiting (asynchronously) until the fake model has received a number of requests."""

from __future__ import annotations

import asyncio

from tests.fakes.openai_server import FakeOpenAI


async def wait_for_requests(llm: FakeOpenAI, count: int, *, timeout_s: float = 30.0) -> None:
    """Return once ``llm`` has received at least ``count`` requests (since its last reset)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while llm.request_count < count:
        if loop.time() > deadline:
            raise AssertionError(f"the model got {llm.request_count} requests, not {count}")
        await asyncio.sleep(0.05)
