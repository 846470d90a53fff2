"""A small MCP server (mcp 2.x ``MCPServer``) over streamable HTTP, for tool-call tests.

It honours the idempotency key Keel sends in the ``_meta`` of every
``tools/call`` (``keel/idempotency_key``), the way a well-behaved tool server
should, and counts real side effects, so a test can prove a retried call ran
once.

Tools
    ``record_event(name)``  the side effect: the first call with a key runs it
                            (``executions`` += 1) and answers ``"recorded <name> #<n>"``;
                            later calls with that key answer the first result
                            without running it. No key: always runs.
    ``echo(text)``          returns ``text``.
    ``sign_in(username, password)``  returns ``"signed in <username>"`` (the call, password
                            included, is in ``calls``: what the tool really received).
    ``slow(seconds)``       sleeps (asynchronously), returns ``"slept <seconds>"``.
    ``fail()``              fails: an ``isError`` result with ``"fail: deliberate failure"``.

In-process use (pytest)::

    with CounterMcpServer() as server:
        config = ToolServerConfig(id="counter", transport="http", url=server.url)
        ...
        assert server.executions == 1
        assert server.calls == [("a", "key-1"), ("a", "key-1")]

Crash tests: ``server.hold()`` makes later tool calls block until
``server.release()``: ``record_event`` runs its side effect first and holds the
answer (``hold(before_effect=True)`` holds before the side effect instead);
``server.wait_for_call()`` blocks the calling thread until a tool call has
arrived. The caller may live in another OS process: it is plain HTTP.

Standalone::

    python -m tests.fakes.mcp_counter_server --port 18091
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from tests.fakes.threaded_server import ThreadedServer

__all__ = ["IDEMPOTENCY_META_KEY", "CounterMcpServer", "RecordedCall", "main"]

IDEMPOTENCY_META_KEY = "keel/idempotency_key"
_GATE_POLL_S = 0.01


@dataclass(frozen=True)
class RecordedCall:
    """One ``tools/call`` as received: tool, arguments, idempotency key, ``_meta`` and HTTP headers."""

    tool: str
    arguments: dict[str, Any]
    idempotency_key: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


def _idempotency_key(ctx: Context) -> str | None:
    meta = ctx.request_context.meta or {}
    key = meta.get(IDEMPOTENCY_META_KEY)
    return key if isinstance(key, str) else None


class CounterMcpServer(ThreadedServer):
    """The fake, served from a daemon thread on ``host`` (``port=0``: a free port)."""

    server_name = "fake MCP server"
    stop_grace_s = 3.0

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        extra_hosts: Sequence[str] = (),
    ) -> None:
        """``extra_hosts``: more ``Host`` header values the SDK's DNS-rebinding protection
        accepts (``name:*``), for tests that reach the server under another name."""
        super().__init__(host=host, port=port, log_level=log_level)
        self._extra_hosts = list(extra_hosts)

        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._log: list[RecordedCall] = []
        self._cursor = 0
        self._calls: list[tuple[str, str | None]] = []
        self._events: list[str] = []
        self._results: dict[str, str] = {}
        self._executions = 0
        self._gate: threading.Event | None = None
        self._gate_before_effect = False
        self._held = 0

        self.mcp: MCPServer = self._build()

    # -- the MCP server ---------------------------------------------------- #

    def _build(self) -> MCPServer:
        # MCPServer calls logging.basicConfig, which gives a bare root logger (pytest with
        # ``-p no:logging``) a RichHandler; rich then imports lazily inside Temporal's workflow
        # sandbox at the next workflow.logger line and fails that workflow task. Keep root as is.
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        mcp = MCPServer("keel-counter", log_level="WARNING")
        root.handlers[:] = handlers
        root.setLevel(level)

        @mcp.tool(description="Record an event (a side effect, deduplicated by idempotency key).")
        async def record_event(name: str, ctx: Context) -> str:
            key = _idempotency_key(ctx)
            gate, before_effect = self._arrive("record_event", {"name": name}, key, ctx)
            if before_effect:
                await self._wait_gate(gate)
            result = self._execute(name, key)
            if not before_effect:
                await self._wait_gate(gate)
            return result

        @mcp.tool(description="Return the text unchanged.")
        async def echo(text: str, ctx: Context) -> str:
            gate, _ = self._arrive("echo", {"text": text}, _idempotency_key(ctx), ctx)
            await self._wait_gate(gate)
            return text

        @mcp.tool(description="Sign in to a service (takes a password).")
        async def sign_in(username: str, password: str, ctx: Context) -> str:
            args = {"username": username, "password": password}
            gate, _ = self._arrive("sign_in", args, _idempotency_key(ctx), ctx)
            await self._wait_gate(gate)
            return f"signed in {username}"

        @mcp.tool(description="Sleep for the given number of seconds.")
        async def slow(seconds: float, ctx: Context) -> str:
            self._arrive("slow", {"seconds": seconds}, _idempotency_key(ctx), ctx)
            await asyncio.sleep(seconds)
            return f"slept {seconds:g}"

        @mcp.tool(description="Always fails.")
        async def fail(ctx: Context) -> str:
            self._arrive("fail", {}, _idempotency_key(ctx), ctx)
            raise ToolError("fail: deliberate failure")

        return mcp

    def _arrive(
        self, tool: str, arguments: dict[str, Any], key: str | None, ctx: Context
    ) -> tuple[threading.Event | None, bool]:
        """Record an arriving call; returns the gate it must honour (if held) and its stage."""
        with self._arrived:
            headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
            self._log.append(
                RecordedCall(tool, arguments, key, dict(ctx.request_context.meta or {}), headers)
            )
            if tool == "record_event":
                self._calls.append((str(arguments["name"]), key))
            self._arrived.notify_all()
            return self._gate, self._gate_before_effect

    def _execute(self, name: str, key: str | None) -> str:
        """The side effect, at most once per idempotency key (no await: atomic on the server loop)."""
        with self._lock:
            if key is not None and key in self._results:
                return self._results[key]
            self._executions += 1
            self._events.append(name)
            result = f"recorded {name} #{self._executions}"
            if key is not None:
                self._results[key] = result
            return result

    async def _wait_gate(self, gate: threading.Event | None) -> None:
        if gate is None:
            return
        with self._lock:
            self._held += 1
        try:
            while not gate.is_set():  # noqa: ASYNC110 - a threading.Event, set from the test's thread
                await asyncio.sleep(_GATE_POLL_S)
        finally:
            with self._lock:
                self._held -= 1

    # -- lifecycle (start, stop, serve_forever, port: ThreadedServer) -------- #

    def _before_stop(self) -> None:
        """Held calls are released; calls still running after ``stop_grace_s`` are cut off.

        Call ``stop()`` from a thread other than the one running the client's event loop
        (``await asyncio.to_thread(server.stop)``) when that loop has open connections.
        """
        self.release()

    def _transport_security(self) -> TransportSecuritySettings | None:
        if not self._extra_hosts:
            return None  # the SDK's default for loopback
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", *self._extra_hosts],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
        )

    def _asgi_app(self) -> ASGIApp:
        return self.mcp.streamable_http_app(host=self._host, transport_security=self._transport_security())

    def _uvicorn_options(self) -> dict[str, Any]:
        return {"lifespan": "on"}

    # -- address ---------------------------------------------------------- #

    @property
    def url(self) -> str:
        """The streamable HTTP endpoint, ``http://127.0.0.1:PORT/mcp``."""
        return f"http://{self._host}:{self.port}/mcp"

    # -- gating ------------------------------------------------------------- #

    def hold(self, *, before_effect: bool = False) -> None:
        """Tool calls arriving from now on block until ``release()``.

        ``record_event`` runs its side effect and then blocks (a worker killed
        meanwhile never sees the answer); ``before_effect=True`` blocks first.
        """
        with self._lock:
            self._gate_before_effect = before_effect
            if self._gate is None:
                self._gate = threading.Event()

    def release(self) -> None:
        """Let every held call finish, and stop holding new ones."""
        with self._lock:
            if self._gate is not None:
                self._gate.set()
                self._gate = None

    @property
    def gate(self) -> threading.Event | None:
        """The event held calls wait on (None when not holding)."""
        with self._lock:
            return self._gate

    @property
    def held_count(self) -> int:
        """Number of calls currently blocked by ``hold()``."""
        with self._lock:
            return self._held

    def wait_for_call(self, timeout: float = 5.0, *, since: int | None = None) -> RecordedCall:
        """Block until a tool call not yet handed out by this method has arrived; return it.

        Calls are handed out in arrival order, each once; ``since=n`` skips to the
        call with index ``n`` (``since=server.call_count`` waits for a new one).
        Raises ``TimeoutError``.
        """
        with self._arrived:
            if since is not None:
                self._cursor = since
            index = self._cursor
            if not self._arrived.wait_for(lambda: len(self._log) > index, timeout):
                raise TimeoutError(f"no tool call #{index} within {timeout}s ({len(self._log)} received)")
            self._cursor = index + 1
            return self._log[index]

    # -- inspection --------------------------------------------------------- #

    @property
    def calls(self) -> list[tuple[str, str | None]]:
        """``(name, idempotency key)`` of every ``record_event`` call, duplicates included."""
        with self._lock:
            return list(self._calls)

    @property
    def executions(self) -> int:
        """Side effects actually run by ``record_event`` (duplicates by key excluded)."""
        with self._lock:
            return self._executions

    @property
    def events(self) -> list[str]:
        """Names of the events actually recorded, in order."""
        with self._lock:
            return list(self._events)

    @property
    def call_log(self) -> list[RecordedCall]:
        """Every tool call received, all tools, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self._log)

    def reset(self) -> None:
        """Forget calls, results and executions; release held calls."""
        self.release()
        with self._lock:
            self._log.clear()
            self._cursor = 0
            self._calls.clear()
            self._events.clear()
            self._results.clear()
            self._executions = 0
            self._gate_before_effect = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.mcp_counter_server",
        description="Fake MCP tool server (record_event / echo / slow / fail) over streamable HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18091)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    fake = CounterMcpServer(host=args.host, port=args.port, log_level=args.log_level)
    sys.stdout.write(f"fake MCP server on http://{args.host}:{args.port}/mcp; Ctrl-C stops\n")
    sys.stdout.flush()
    fake.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
