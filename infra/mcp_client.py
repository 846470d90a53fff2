"""MCP tool servers, as seen from a worker: discover their tools, call them.

One :class:`McpToolClient` per worker process. It keeps one connected
``mcp.Client`` (mcp 2.x) per tool server id and reuses it across calls:

- **stdio** servers are started from the registered ``command`` and ``args``
  (an executable and its arguments, never a shell line) with an explicit
  environment: ``PATH`` and ``LANG`` from the worker plus the registered
  ``env``; every variable the SDK would inherit (``HOME``, ``LOGNAME``,
  ``SHELL``, ``TERM``, ``USER``) is set by Keel, so nothing else of the
  worker's environment reaches the server. ``stdio_allowed_commands`` (when
  set) refuses any other command (:class:`StdioCommandRefused`); a bare command
  name is resolved like the API resolves it (``infra.stdio_commands``).
  ``stdio_run_as_user``: when the worker runs as root, the server is started
  through ``setpriv`` as that user (no groups, no capabilities, no new
  privileges, cwd ``/``), so it cannot read the worker's
  ``/proc/<pid>/environ`` nor its secret files.
- **http** servers are reached over streamable HTTP at ``url`` with the
  registered ``headers`` (e.g. ``Authorization``). ``url_guard`` (typically
  ``infra.egress.resolve_and_check``) runs before every new connection; when
  it returns the addresses it checked, the connection is pinned to them
  (no second DNS lookup: a rebinding answer is never used), keeping the
  ``Host`` header, TLS server name and certificate check of the URL's host.

Each session is held open by a background task of its own (the SDK's task
groups must be entered and left by the same task); calls from any task of the
loop share it. A call on a pooled session that turns out to be dead (server
restarted, process exited) reconnects once; a fresh session that fails raises
:class:`ToolUnavailable`. Sessions idle for ``idle_close_s`` are closed on the
next checkout.

Every ``tools/call`` carries the caller's idempotency key in the request's
``_meta`` under :data:`IDEMPOTENCY_META_KEY`, so a server can answer a retried
call (after a worker crash, or the reconnect above) with its first result
instead of repeating the side effect.

Errors: a timeout (the whole call, connection included) raises
:class:`ToolTimeout`; a server that cannot be reached raises
:class:`ToolUnavailable`; a tool that failed (``isError``) or a call the server
rejected (unknown tool, invalid arguments) is an outcome with ``ok=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import anyio
import httpcore2
import httpx2
import mcp_types as types
import structlog
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.stdio_commands import resolve_command, stdio_command_allowed

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "DiscoveredTool",
    "McpToolClient",
    "McpToolError",
    "StdioCommandRefused",
    "ToolCallOutcome",
    "ToolServerConfig",
    "ToolTimeout",
    "ToolUnavailable",
    "render_content",
    "stdio_command_allowed",
]

log = structlog.get_logger(__name__)

#: Key of the idempotency key in the ``_meta`` of every ``tools/call`` request.
IDEMPOTENCY_META_KEY = "keel/idempotency_key"

_SAFE_ENV_VARS = ("PATH", "LANG")
_CLIENT_INFO = types.Implementation(name="keel", version="0.1.0")
_MAX_LIST_PAGES = 50
_T = TypeVar("_T")


# --------------------------------------------------------------------------- models


class ToolServerConfig(BaseModel):
    """A tool server as an admin registered it: data, never evaluated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    transport: Literal["stdio", "http"]
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @model_validator(mode="after")
    def _transport_fields(self) -> ToolServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio tool server needs a command")
        if self.transport == "http" and not self.url:
            raise ValueError("an http tool server needs a url")
        return self


class DiscoveredTool(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]


class ToolCallOutcome(BaseModel):
    """What a call returned: ``content`` is the text for the model (non-text items summarised)."""

    ok: bool
    content: str
    is_error: bool
    structured: Any | None = None


class McpToolError(Exception):
    """Base of the errors :class:`McpToolClient` raises."""


class ToolTimeout(McpToolError):
    """The call (connection included) did not finish within its ``timeout_s``."""


class ToolUnavailable(McpToolError):
    """The tool server could not be reached, or its connection broke."""


class StdioCommandRefused(McpToolError):
    """The stdio command is not in ``KEEL_MCP_STDIO_ALLOWED_COMMANDS`` (or cannot be isolated)."""


# --------------------------------------------------------------------------- helpers


def render_content(blocks: Sequence[types.ContentBlock]) -> str:
    """Text items joined by newlines; other items as ``[image]``, ``[audio]``, ``[resource: uri]``."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append("[image]")
        elif isinstance(block, types.AudioContent):
            parts.append("[audio]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        else:  # a content type newer than this code
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    return "\n".join(parts)


def _outcome(result: types.CallToolResult) -> ToolCallOutcome:
    is_error = bool(result.is_error)
    return ToolCallOutcome(
        ok=not is_error,
        content=render_content(result.content),
        is_error=is_error,
        structured=result.structured_content,
    )


def _stdio_env(extra: Mapping[str, str], *, user: pwd.struct_passwd | None) -> dict[str, str]:
    """PATH and LANG of the worker, the identity variables of the user the server runs as,
    then the registered ``env``. Every key the SDK would inherit from the worker is set here."""
    base = {name: value for name in _SAFE_ENV_VARS if (value := os.environ.get(name)) is not None}
    name = user.pw_name if user else pwd.getpwuid(os.geteuid()).pw_name
    identity = {
        "HOME": user.pw_dir if user else os.environ.get("HOME", "/"),
        "LOGNAME": name,
        "USER": name,
        "SHELL": "/bin/sh",
        "TERM": "dumb",
    }
    return base | identity | dict(extra)


class _PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Connects to the addresses the egress guard checked, never to a fresh DNS answer."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        self._host = host.strip("[]").rstrip(".").lower()
        self._addresses = list(addresses)
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore2.AsyncNetworkStream:
        if host.strip("[]").rstrip(".").lower() != self._host:
            raise httpcore2.ConnectError(f"{host!r} is not the checked host {self._host!r}")
        failure: Exception = httpcore2.ConnectError(f"no checked address for {host!r}")
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout, OSError) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not used for tool servers")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx2.AsyncHTTPTransport):
    """httpx's transport with its connection pool on :class:`_PinnedBackend`: the URL (hence the
    ``Host`` header and the TLS server name / certificate check) is unchanged."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            network_backend=_PinnedBackend(host, addresses),
        )


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    httpx2.TransportError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


def _is_connection_failure(exc: BaseException) -> bool:
    leaves = list(_leaves(exc))
    return bool(leaves) and all(
        isinstance(leaf, _CONNECTION_ERRORS)
        or (isinstance(leaf, MCPError) and leaf.code == types.CONNECTION_CLOSED)
        for leaf in leaves
    )


def _is_timeout(exc: BaseException) -> bool:
    return any(
        isinstance(leaf, TimeoutError) or (isinstance(leaf, MCPError) and leaf.code == types.REQUEST_TIMEOUT)
        for leaf in _leaves(exc)
    )


def _describe(exc: BaseException) -> str:
    text = "; ".join(f"{type(leaf).__name__}: {leaf}".rstrip(": ") for leaf in _leaves(exc))
    return text[:500]


# --------------------------------------------------------------------------- the pool


@dataclass(eq=False)
class _Session:
    """One connected client, held open by ``runner`` until ``stop`` is set."""

    config: ToolServerConfig
    client: Client
    stop: asyncio.Event
    runner: asyncio.Task[None]
    last_used: float
    in_flight: int = 0
    broken: bool = False

    @property
    def usable(self) -> bool:
        return not (self.broken or self.stop.is_set() or self.runner.done())


@dataclass(eq=False)
class _CachedTools:
    config: ToolServerConfig
    expires_at: float
    tools: tuple[DiscoveredTool, ...]


async def _hold_open(
    client: Client,
    http: httpx2.AsyncClient | None,
    ready: asyncio.Future[None],
    stop: asyncio.Event,
) -> None:
    """Enter ``client`` (and its HTTP client), report readiness, wait for ``stop``, leave."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            if http is not None:
                await stack.enter_async_context(http)
            await stack.enter_async_context(client)
            if ready.done():  # the caller gave up while we connected
                return
            ready.set_result(None)
            await stop.wait()
    except asyncio.CancelledError:
        if not ready.done():
            ready.cancel()
        raise
    except Exception as exc:  # the connection failed or broke; callers learn it from `ready` or their call
        if not ready.done():
            ready.set_exception(exc)
        else:
            log.info("mcp.session_ended", error=_describe(exc))


@dataclass(eq=False)
class McpToolClient:
    """Pooled MCP sessions and cached tool lists, one instance per worker process (and event loop).

    ``tools_ttl_s``: how long a server's tool list is served from memory.
    ``idle_close_s``: sessions unused this long are closed at the next checkout.
    ``request_timeout_s``: the SDK's read timeout for requests without their own
    (handshake, ``tools/list``). ``url_guard``: awaited with the URL before every
    new http connection; whatever it raises (e.g. ``EgressRefused``) propagates; the
    addresses it returns (if any) are the only ones connected to.
    ``stdio_allowed_commands`` / ``stdio_run_as_user``: see the module doc.
    """

    tools_ttl_s: float = 60.0
    idle_close_s: float = 300.0
    request_timeout_s: float = 60.0
    url_guard: Callable[[str], Awaitable[Sequence[str] | None]] | None = None
    stdio_allowed_commands: Sequence[str] | None = None
    stdio_run_as_user: str | None = None
    clock: Callable[[], float] = time.monotonic

    _sessions: dict[str, _Session] = field(default_factory=dict, init=False, repr=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)
    _tools: dict[str, _CachedTools] = field(default_factory=dict, init=False, repr=False)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _connects: int = field(default=0, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)

    # -- public API ----------------------------------------------------------------

    @property
    def connects(self) -> int:
        """How many sessions this client has opened (pooling keeps it low)."""
        return self._connects

    @property
    def open_sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if s.usable)

    async def list_tools(
        self, server: ToolServerConfig, *, timeout_s: float = 30, refresh: bool = False
    ) -> list[DiscoveredTool]:
        """The server's tools (every page), from a cache of ``tools_ttl_s`` unless ``refresh``."""
        cached = self._tools.get(server.id)
        if (
            not refresh
            and cached is not None
            and cached.config == server
            and cached.expires_at > self.clock()
        ):
            return [tool.model_copy(deep=True) for tool in cached.tools]

        async def fetch(client: Client) -> list[DiscoveredTool]:
            found: list[DiscoveredTool] = []
            cursor: str | None = None
            for _ in range(_MAX_LIST_PAGES):
                page = await client.list_tools(cursor=cursor)
                found.extend(
                    DiscoveredTool(
                        name=tool.name,
                        description=tool.description or "",
                        input_schema=dict(tool.input_schema),
                    )
                    for tool in page.tools
                )
                cursor = page.next_cursor
                if cursor is None:
                    break
            return found

        try:
            tools = await self._with_deadline(server, "tools/list", timeout_s, fetch)
        except MCPError as exc:
            raise ToolUnavailable(f"tool server {server.id!r} refused tools/list: {exc.message}") from exc
        self._tools[server.id] = _CachedTools(server, self.clock() + self.tools_ttl_s, tuple(tools))
        return tools

    async def call_tool(
        self,
        server: ToolServerConfig,
        name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str,
        timeout_s: float,
    ) -> ToolCallOutcome:
        """Call ``name``; the idempotency key travels in ``_meta[IDEMPOTENCY_META_KEY]``."""
        meta = cast(types.RequestParamsMeta, {IDEMPOTENCY_META_KEY: idempotency_key})

        async def call(client: Client) -> types.CallToolResult:
            return await client.call_tool(name, arguments, read_timeout_seconds=timeout_s, meta=meta)

        try:
            result = await self._with_deadline(server, f"tools/call {name}", timeout_s, call)
        except MCPError as exc:  # the server rejected the call: unknown tool, invalid arguments, ...
            return ToolCallOutcome(
                ok=False, is_error=True, content=f"the tool server rejected the call: {exc.message}"
            )
        return _outcome(result)

    def forget_tools(self, server_id: str | None = None) -> None:
        """Drop cached tool lists (one server's, or all)."""
        if server_id is None:
            self._tools.clear()
        else:
            self._tools.pop(server_id, None)

    async def __aenter__(self) -> McpToolClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self, *, timeout_s: float = 10.0) -> None:
        """Close every session (stdio servers are stopped) and forget the caches."""
        for session in list(self._sessions.values()):
            self._retire(session)
        self._tools.clear()
        pending = set(self._retiring)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout_s)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=timeout_s)

    # -- internals -----------------------------------------------------------------

    async def _with_deadline(
        self,
        server: ToolServerConfig,
        what: str,
        timeout_s: float,
        op: Callable[[Client], Awaitable[_T]],
    ) -> _T:
        try:
            return await asyncio.wait_for(self._with_session(server, op), timeout_s)
        except McpToolError:
            raise
        except Exception as exc:
            if _is_timeout(exc):
                raise ToolTimeout(f"{what} on tool server {server.id!r} took over {timeout_s:g}s") from None
            raise

    async def _with_session(self, server: ToolServerConfig, op: Callable[[Client], Awaitable[_T]]) -> _T:
        for attempt in (1, 2):
            session, fresh = await self._checkout(server)
            try:
                return await op(session.client)
            except Exception as exc:
                broken = _is_connection_failure(exc) or not session.usable
                if not broken or _is_timeout(exc):
                    raise
                self._retire(session)
                if fresh or attempt == 2:
                    raise ToolUnavailable(
                        f"tool server {server.id!r} connection failed: {_describe(exc)}"
                    ) from exc
                log.info("mcp.reconnect", server_id=server.id, error=_describe(exc))
            finally:
                session.in_flight -= 1
                session.last_used = self.clock()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _checkout(self, server: ToolServerConfig) -> tuple[_Session, bool]:
        """A usable session for ``server`` (connecting if needed), with ``in_flight`` counted."""
        self._bind_loop()
        self._close_idle()
        lock = self._locks.setdefault(server.id, asyncio.Lock())
        async with lock:
            session = self._sessions.get(server.id)
            if session is not None and (not session.usable or session.config != server):
                self._retire(session)
                session = None
            fresh = session is None
            if session is None:
                session = await self._connect(server)
                self._sessions[server.id] = session
            session.in_flight += 1
            session.last_used = self.clock()
            return session, fresh

    async def _connect(self, server: ToolServerConfig) -> _Session:
        pinned: Sequence[str] | None = None
        if server.transport == "http" and self.url_guard is not None:
            assert server.url is not None  # the model validator guarantees it
            pinned = await self.url_guard(server.url)
        client, http = self._build(server, pinned=pinned)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        stop = asyncio.Event()
        runner = loop.create_task(_hold_open(client, http, ready, stop), name=f"mcp-session:{server.id}")
        session = _Session(config=server, client=client, stop=stop, runner=runner, last_used=self.clock())
        runner.add_done_callback(lambda _task: setattr(session, "broken", True))
        try:
            await ready
        except BaseException as exc:
            runner.cancel()
            self._retire(session)
            if isinstance(exc, Exception) and not _is_timeout(exc):
                raise ToolUnavailable(
                    f"cannot connect to tool server {server.id!r}: {_describe(exc)}"
                ) from exc
            raise
        self._connects += 1
        log.info("mcp.connected", server_id=server.id, transport=server.transport)
        return session

    def _stdio_params(self, server: ToolServerConfig) -> StdioServerParameters:
        assert server.command is not None  # the model validator guarantees it
        if not stdio_command_allowed(server.command, self.stdio_allowed_commands):
            raise StdioCommandRefused(
                f"the stdio command {server.command!r} is not in KEEL_MCP_STDIO_ALLOWED_COMMANDS"
            )
        # Stored commands are absolute (resolved at registration); a bare name from an older
        # entry is resolved the same way here, so the server's minimal PATH does not matter.
        command = resolve_command(server.command) or server.command
        if self.stdio_run_as_user is None or os.geteuid() != 0:
            return StdioServerParameters(
                command=command, args=list(server.args), env=_stdio_env(server.env, user=None)
            )
        setpriv = shutil.which("setpriv")
        try:
            user = pwd.getpwnam(self.stdio_run_as_user)
        except KeyError:
            raise StdioCommandRefused(
                f"KEEL_MCP_STDIO_RUN_AS_USER: no user {self.stdio_run_as_user!r}"
            ) from None
        if setpriv is None:
            raise StdioCommandRefused("KEEL_MCP_STDIO_RUN_AS_USER needs setpriv (util-linux) on the worker")
        drop = [
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
        ]
        return StdioServerParameters(
            command=setpriv,
            args=[*drop, command, *server.args],
            env=_stdio_env(server.env, user=user),
            cwd="/",
        )

    def _build(
        self, server: ToolServerConfig, *, pinned: Sequence[str] | None = None
    ) -> tuple[Client, httpx2.AsyncClient | None]:
        if server.transport == "stdio":
            params = self._stdio_params(server)
            client = Client(
                params,
                read_timeout_seconds=self.request_timeout_s,
                client_info=_CLIENT_INFO,
                cache=None,
            )
            return client, None
        assert server.url is not None  # the model validator guarantees it
        transport = None
        if pinned:
            transport = _PinnedTransport(httpx2.URL(server.url).host, pinned)
        http = httpx2.AsyncClient(
            headers=dict(server.headers),
            timeout=httpx2.Timeout(30.0, connect=10.0, read=300.0),
            follow_redirects=False,
            transport=transport,
        )
        client = Client(
            streamable_http_client(server.url, http_client=http),
            read_timeout_seconds=self.request_timeout_s,
            client_info=_CLIENT_INFO,
            cache=None,
        )
        return client, http

    def _bind_loop(self) -> None:
        """Sessions belong to the loop that opened them: one loop per client."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError("McpToolClient is bound to another running event loop; use one per loop")
        # first use, or the previous loop is gone (and its sessions with it)
        self._loop = loop
        self._sessions.clear()
        self._locks.clear()
        self._retiring.clear()

    def _retire(self, session: _Session) -> None:
        """Stop ``session`` in the background (its runner leaves the client's context)."""
        if self._sessions.get(session.config.id) is session:
            del self._sessions[session.config.id]
        session.broken = True
        session.stop.set()
        if not session.runner.done():
            self._retiring.add(session.runner)
            session.runner.add_done_callback(self._retiring.discard)

    def _close_idle(self) -> None:
        now = self.clock()
        for session in list(self._sessions.values()):
            if session.in_flight == 0 and now - session.last_used > self.idle_close_s:
                log.info("mcp.idle_close", server_id=session.config.id)
                self._retire(session)
