"""DNS rebinding (issue 9): the tool connection goes to the address the egress guard
checked, never to a second DNS answer. DNS is external, so the tests inject the resolver
(the guard's port for DNS) the way a rebinding name server answers: first a permitted
address, then 127.0.0.1. Real MCP server (the counting fake over streamable HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.egress import resolve_and_check
from infra.mcp_client import McpToolClient, ToolServerConfig, ToolTimeout, ToolUnavailable
from tests.fakes.mcp_counter_server import CounterMcpServer

PUBLIC = "93.184.215.14"  # a global unicast address: passes the egress rule


class RebindingResolver:
    """Answers each lookup with the next of ``answers`` (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


HOST = "tools.rebind.test"  # resolvable by the injected resolver only


@pytest.fixture
def counter() -> Iterator[CounterMcpServer]:
    with CounterMcpServer(extra_hosts=[f"{HOST}:*"]) as server:
        yield server


def _client(resolver: RebindingResolver, allowed_hosts: list[str] | None = None) -> McpToolClient:
    async def guard(url: str) -> list[str]:
        return await resolve_and_check(url, allowed_hosts=allowed_hosts or [], resolver=resolver)

    return McpToolClient(url_guard=guard)


async def test_a_rebinding_answer_never_reaches_loopback(counter: CounterMcpServer) -> None:
    # "localhost" stands for the attacker's name: the guard's lookup says PUBLIC, and any
    # second lookup (the system's, as the HTTP client would make) says 127.0.0.1.
    resolver = RebindingResolver([PUBLIC], ["127.0.0.1"])
    client = _client(resolver)
    server = ToolServerConfig(id="rebind", transport="http", url=f"http://localhost:{counter.port}/mcp")
    try:
        with pytest.raises((ToolUnavailable, ToolTimeout)):
            await client.call_tool(server, "record_event", {"name": "x"}, idempotency_key="r-1", timeout_s=3)
    finally:
        await client.aclose()
    assert counter.call_count == 0, "the connection went to loopback, not to the checked address"
    assert resolver.lookups and set(resolver.lookups) == {"localhost"}


async def test_the_connection_goes_to_the_checked_address_with_the_original_host(
    counter: CounterMcpServer,
) -> None:
    # A name only the guard's resolver knows: reaching the server proves the connection used
    # the checked address (no second lookup), and the Host header keeps the name.
    host = HOST
    resolver = RebindingResolver(["127.0.0.1"], ["10.9.9.9"])
    client = _client(resolver, allowed_hosts=[host])
    server = ToolServerConfig(id="pinned", transport="http", url=f"http://{host}:{counter.port}/mcp")
    try:
        outcome = await client.call_tool(server, "echo", {"text": "hi"}, idempotency_key="p-1", timeout_s=10)
    finally:
        await client.aclose()
    assert outcome.ok and outcome.content == "hi"
    assert counter.call_log[-1].headers["host"] == f"{host}:{counter.port}"
    assert resolver.lookups == [host]  # one lookup per connection: the guard's


async def test_refused_answers_are_still_refused() -> None:
    from core.policy.egress import EgressRefused

    with pytest.raises(EgressRefused):
        await resolve_and_check("http://evil.example/mcp", resolver=RebindingResolver(["127.0.0.1"]))
