"""SDK tests run the real platform (tests/conftest.py) and talk to it only through keel_sdk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from keel_sdk import AsyncKeelClient

from tests.conftest import RunningApi
from tests.tools.conftest import counter, empty_allowlist  # the real MCP server and a clean allowlist

__all__ = ["ClientFactory", "counter", "empty_allowlist", "sdk_client"]

ClientFactory = Callable[..., Awaitable[AsyncKeelClient]]


async def sdk_client(api: RunningApi, user_id: str, **claims: Any) -> AsyncKeelClient:
    """An ``AsyncKeelClient`` for ``api`` signed in as ``user_id`` (a dev token)."""
    return AsyncKeelClient(base_url=api.base_url, token=await api.token(user_id, **claims), timeout=60)


@pytest.fixture
async def client_for(platform: RunningApi) -> AsyncIterator[ClientFactory]:
    made: list[AsyncKeelClient] = []

    async def make(user_id: str, **claims: Any) -> AsyncKeelClient:
        made.append(await sdk_client(platform, user_id, **claims))
        return made[-1]

    yield make
    for client in made:
        await client.close()
