"""McpToolClient against real MCP servers: mcp-server-time over stdio, the counter fake over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import mcp_types as types
import pytest
from pydantic import ValidationError

from infra.mcp_client import (
    IDEMPOTENCY_META_KEY,
    McpToolClient,
    ToolServerConfig,
    ToolTimeout,
    ToolUnavailable,
    render_content,
)
from tests.fakes.mcp_counter_server import CounterMcpServer

REPO_ROOT = Path(__file__).resolve().parents[2]
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")

# A stdio MCP server: reports the environment it was started with; exits mid-call once.
SCRIPTED_SERVER = """
import json, os, pathlib
from mcp.server.mcpserver import MCPServer
server = MCPServer("scripted", log_level="WARNING")
@server.tool()
def environment() -> str:
    return json.dumps(sorted(os.environ))
@server.tool()
def exit_once(marker: str) -> str:
    path = pathlib.Path(marker)
    if not path.exists():
        path.write_text("exited")
        os._exit(1)
    return "survived"
server.run()
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def counter_server() -> Iterator[CounterMcpServer]:
    with CounterMcpServer() as server:
        yield server


@pytest.fixture
def counter(counter_server: CounterMcpServer) -> Iterator[CounterMcpServer]:
    counter_server.reset()
    yield counter_server
    counter_server.reset()


@pytest.fixture
def counter_config(counter: CounterMcpServer) -> ToolServerConfig:
    return ToolServerConfig(id="counter", transport="http", url=counter.url)


@pytest.fixture
async def client() -> AsyncIterator[McpToolClient]:
    mcp = McpToolClient()
    yield mcp
    await mcp.aclose()


# ------------------------------------------------------------------ config


def test_config_requires_transport_fields() -> None:
    with pytest.raises(ValidationError):
        ToolServerConfig(id="a", transport="stdio")
    with pytest.raises(ValidationError):
        ToolServerConfig(id="a", transport="http")
    with pytest.raises(ValidationError):
        ToolServerConfig.model_validate({"id": "a", "transport": "http", "url": "http://x", "shell": "sh"})


def test_config_repr_hides_headers_and_env() -> None:
    config = ToolServerConfig(
        id="a", transport="http", url="https://tools.example/mcp", headers={"Authorization": "Bearer s3cret"}
    )
    assert "s3cret" not in repr(config)


def test_render_content_summarises_non_text() -> None:
    blocks: list[types.ContentBlock] = [
        types.TextContent(text="one"),
        types.ImageContent(data="aGk=", mime_type="image/png"),
        types.AudioContent(data="aGk=", mime_type="audio/wav"),
        types.TextContent(text="two"),
    ]
    assert render_content(blocks) == "one\n[image]\n[audio]\ntwo"


# ------------------------------------------------------------------ stdio


async def test_stdio_time_server(client: McpToolClient) -> None:
    server = ToolServerConfig(id="time", transport="stdio", command=TIME_SERVER)
    tools = await client.list_tools(server)
    names = {tool.name for tool in tools}
    assert "get_current_time" in names
    schema = next(t for t in tools if t.name == "get_current_time").input_schema
    assert "timezone" in schema["properties"]

    outcome = await client.call_tool(
        server, "get_current_time", {"timezone": "UTC"}, idempotency_key="time-1", timeout_s=20
    )
    assert outcome.ok and not outcome.is_error
    assert "UTC" in outcome.content
    assert client.connects == 1  # list and call shared one session (one process)


async def test_stdio_environment_is_explicit(client: McpToolClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_SECRET_FOR_TEST", "do-not-leak")
    server = ToolServerConfig(
        id="env",
        transport="stdio",
        command=sys.executable,
        args=["-c", SCRIPTED_SERVER],
        env={"TOOL_MODE": "x"},
    )
    outcome = await client.call_tool(server, "environment", {}, idempotency_key="env-1", timeout_s=30)
    assert outcome.ok, outcome.content
    names = set(json.loads(outcome.content))
    assert {"PATH", "TOOL_MODE"} <= names
    assert "KEEL_SECRET_FOR_TEST" not in names


async def test_stdio_missing_command_is_unavailable(client: McpToolClient) -> None:
    server = ToolServerConfig(id="missing", transport="stdio", command="/nonexistent/keel-tool-server")
    with pytest.raises(ToolUnavailable):
        await client.call_tool(server, "anything", {}, idempotency_key="k", timeout_s=10)


# ------------------------------------------------------------------ http


async def test_http_list_and_echo(client: McpToolClient, counter_config: ToolServerConfig) -> None:
    names = {tool.name for tool in await client.list_tools(counter_config)}
    assert names == {"record_event", "echo", "sign_in", "slow", "fail"}
    outcome = await client.call_tool(
        counter_config, "echo", {"text": "hello"}, idempotency_key="echo-1", timeout_s=5
    )
    assert outcome.ok and outcome.content == "hello"
    assert outcome.structured == {"result": "hello"}


async def test_idempotency_key_reaches_server_and_dedupes(
    client: McpToolClient, counter: CounterMcpServer, counter_config: ToolServerConfig
) -> None:
    first = await client.call_tool(
        counter_config, "record_event", {"name": "a"}, idempotency_key="key-1", timeout_s=5
    )
    again = await client.call_tool(
        counter_config, "record_event", {"name": "a"}, idempotency_key="key-1", timeout_s=5
    )
    assert first.content == again.content == "recorded a #1"
    assert counter.executions == 1
    assert counter.calls == [("a", "key-1"), ("a", "key-1")]
    assert counter.call_log[0].meta[IDEMPOTENCY_META_KEY] == "key-1"

    other = await client.call_tool(
        counter_config, "record_event", {"name": "a"}, idempotency_key="key-2", timeout_s=5
    )
    assert other.content == "recorded a #2"
    assert counter.executions == 2


async def test_tool_error_is_an_outcome(client: McpToolClient, counter_config: ToolServerConfig) -> None:
    outcome = await client.call_tool(counter_config, "fail", {}, idempotency_key="f-1", timeout_s=5)
    assert not outcome.ok and outcome.is_error
    assert "deliberate failure" in outcome.content

    unknown = await client.call_tool(counter_config, "no_such_tool", {}, idempotency_key="f-2", timeout_s=5)
    assert not unknown.ok and unknown.is_error


async def test_timeout(client: McpToolClient, counter_config: ToolServerConfig) -> None:
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        await client.call_tool(counter_config, "slow", {"seconds": 5}, idempotency_key="s-1", timeout_s=0.5)
    assert time.monotonic() - started < 3
    # the session survives a timed-out call
    outcome = await client.call_tool(
        counter_config, "echo", {"text": "x"}, idempotency_key="s-2", timeout_s=5
    )
    assert outcome.ok
    assert client.connects == 1


async def test_dead_url_is_unavailable(client: McpToolClient) -> None:
    server = ToolServerConfig(id="dead", transport="http", url=f"http://127.0.0.1:{_closed_port()}/mcp")
    with pytest.raises(ToolUnavailable):
        await client.call_tool(server, "echo", {"text": "x"}, idempotency_key="d-1", timeout_s=5)
    with pytest.raises(ToolUnavailable):
        await client.list_tools(server)


async def test_headers_are_sent(client: McpToolClient, counter: CounterMcpServer) -> None:
    server = ToolServerConfig(
        id="counter-auth", transport="http", url=counter.url, headers={"Authorization": "Bearer t0ken"}
    )
    await client.call_tool(server, "echo", {"text": "x"}, idempotency_key="h-1", timeout_s=5)
    assert counter.call_log[-1].headers["authorization"] == "Bearer t0ken"


# ------------------------------------------------------------------ pooling and caching


async def test_calls_reuse_one_session(client: McpToolClient, counter_config: ToolServerConfig) -> None:
    await client.list_tools(counter_config)
    await client.call_tool(counter_config, "echo", {"text": "1"}, idempotency_key="p-1", timeout_s=5)
    await client.call_tool(counter_config, "echo", {"text": "2"}, idempotency_key="p-2", timeout_s=5)
    outcomes = await asyncio.gather(
        *(
            client.call_tool(counter_config, "echo", {"text": str(i)}, idempotency_key=f"p-c{i}", timeout_s=5)
            for i in range(5)
        )
    )
    assert [o.content for o in outcomes] == ["0", "1", "2", "3", "4"]
    assert client.connects == 1
    assert client.open_sessions == 1


async def test_concurrent_first_calls_connect_once(counter_config: ToolServerConfig) -> None:
    mcp = McpToolClient()
    try:
        await asyncio.gather(
            *(
                mcp.call_tool(counter_config, "echo", {"text": "x"}, idempotency_key=f"c-{i}", timeout_s=5)
                for i in range(4)
            )
        )
        assert mcp.connects == 1
    finally:
        await mcp.aclose()
    assert mcp.open_sessions == 0


async def test_changed_config_reconnects(client: McpToolClient, counter: CounterMcpServer) -> None:
    base = ToolServerConfig(id="counter", transport="http", url=counter.url)
    await client.call_tool(base, "echo", {"text": "x"}, idempotency_key="cc-1", timeout_s=5)
    changed = base.model_copy(update={"headers": {"Authorization": "Bearer new"}})
    await client.call_tool(changed, "echo", {"text": "x"}, idempotency_key="cc-2", timeout_s=5)
    assert client.connects == 2
    assert counter.call_log[-1].headers["authorization"] == "Bearer new"


async def test_idle_sessions_are_closed(counter_config: ToolServerConfig) -> None:
    clock = FakeClock()
    mcp = McpToolClient(idle_close_s=60, clock=clock)
    try:
        await mcp.call_tool(counter_config, "echo", {"text": "x"}, idempotency_key="i-1", timeout_s=5)
        clock.now += 30
        await mcp.call_tool(counter_config, "echo", {"text": "x"}, idempotency_key="i-2", timeout_s=5)
        assert mcp.connects == 1
        clock.now += 61
        await mcp.call_tool(counter_config, "echo", {"text": "x"}, idempotency_key="i-3", timeout_s=5)
        assert mcp.connects == 2
    finally:
        await mcp.aclose()


async def test_tool_list_cache(counter: CounterMcpServer, counter_config: ToolServerConfig) -> None:
    clock = FakeClock()
    mcp = McpToolClient(tools_ttl_s=60, clock=clock)

    def extra() -> str:
        return "extra"

    try:
        assert "extra" not in {t.name for t in await mcp.list_tools(counter_config)}
        counter.mcp.add_tool(extra, name="extra", description="added later")
        assert "extra" not in {t.name for t in await mcp.list_tools(counter_config)}  # cached
        assert "extra" in {t.name for t in await mcp.list_tools(counter_config, refresh=True)}
        counter.mcp.remove_tool("extra")
        assert "extra" in {t.name for t in await mcp.list_tools(counter_config)}  # cached again
        clock.now += 61
        assert "extra" not in {t.name for t in await mcp.list_tools(counter_config)}  # expired
    finally:
        await mcp.aclose()
        if "extra" in {t.name for t in await counter.mcp.list_tools()}:
            counter.mcp.remove_tool("extra")


async def test_stdio_server_exit_reconnects_once(client: McpToolClient, tmp_path: Path) -> None:
    server = ToolServerConfig(
        id="scripted", transport="stdio", command=sys.executable, args=["-c", SCRIPTED_SERVER]
    )
    await client.call_tool(server, "environment", {}, idempotency_key="x-1", timeout_s=30)
    # the process dies under the pooled session: one reconnect, the call is sent again (same key)
    outcome = await client.call_tool(
        server, "exit_once", {"marker": str(tmp_path / "marker")}, idempotency_key="x-2", timeout_s=30
    )
    assert outcome.content == "survived"
    assert client.connects == 2


async def test_http_server_restart(client: McpToolClient) -> None:
    server = CounterMcpServer().start()
    port = server.port
    config = ToolServerConfig(id="restarting", transport="http", url=server.url)
    try:
        await client.call_tool(config, "echo", {"text": "x"}, idempotency_key="r-1", timeout_s=5)
        await asyncio.to_thread(server.stop)
        server = CounterMcpServer(port=port).start()
        outcome = await client.call_tool(config, "echo", {"text": "y"}, idempotency_key="r-2", timeout_s=5)
        assert outcome.content == "y"
        await asyncio.to_thread(server.stop)
        with pytest.raises(ToolUnavailable):  # the pooled session fails, and so does one reconnect
            await client.call_tool(config, "echo", {"text": "z"}, idempotency_key="r-3", timeout_s=5)
        connects = client.connects
        server = CounterMcpServer(port=port).start()
        outcome = await client.call_tool(config, "echo", {"text": "w"}, idempotency_key="r-4", timeout_s=5)
        assert outcome.content == "w"
        assert client.connects == connects + 1
    finally:
        await asyncio.to_thread(server.stop)


# ------------------------------------------------------------------ the fake's gate, across processes

CALLER = """
import asyncio, sys
from infra.mcp_client import McpToolClient, ToolServerConfig

async def main() -> None:
    config = ToolServerConfig(id="counter", transport="http", url=sys.argv[1])
    await McpToolClient().call_tool(
        config, "record_event", {"name": "crash"}, idempotency_key=sys.argv[2], timeout_s=60
    )

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("before_effect", [False, True])
async def test_caller_killed_mid_call_then_retry_runs_once(
    client: McpToolClient, counter: CounterMcpServer, counter_config: ToolServerConfig, before_effect: bool
) -> None:
    counter.hold(before_effect=before_effect)
    caller = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CALLER, counter.url, "crash-key", cwd=REPO_ROOT
    )
    try:
        call = await asyncio.to_thread(counter.wait_for_call, 30)
        assert call.tool == "record_event" and call.idempotency_key == "crash-key"
        assert counter.executions == (0 if before_effect else 1)
        assert counter.gate is not None
    finally:
        caller.kill()
        await asyncio.wait_for(caller.wait(), 10)
    counter.release()
    retried = await client.call_tool(
        counter_config, "record_event", {"name": "crash"}, idempotency_key="crash-key", timeout_s=10
    )
    assert retried.content == "recorded crash #1"
    assert counter.executions == 1
    assert counter.events == ["crash"]
