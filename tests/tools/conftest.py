"""Fixtures shared by the tool tests: a real MCP server, and an empty allowlist."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from infra.settings import Settings
from tests.fakes.mcp_counter_server import CounterMcpServer


@pytest.fixture
async def empty_allowlist(settings: Settings) -> AsyncIterator[None]:
    """The allowlist is organisation-wide: a test using this starts and ends without tool servers."""
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        await conn.execute("UPDATE tool_servers SET deleted_at = now() WHERE deleted_at IS NULL")
        yield
        await conn.execute("UPDATE tool_servers SET deleted_at = now() WHERE deleted_at IS NULL")
    finally:
        await conn.close()


@pytest.fixture
def counter() -> Iterator[CounterMcpServer]:
    """The counting MCP server (streamable HTTP on loopback), one per test."""
    with CounterMcpServer() as server:
        yield server
