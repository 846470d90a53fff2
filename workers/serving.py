"""Serving an ASGI app on a socket bound first: the one uvicorn harness (the API, its
metrics port, a worker's health port, the tests and the benches).

``bind_socket`` binds the port first, so a port that is taken is one clear error
(:class:`PortInUse`) before anything else starts; ``serving`` runs uvicorn on that
socket until the block ends. uvicorn's own signal capture is off: the caller owns
SIGINT/SIGTERM and stops everything in order.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager, contextmanager
from typing import Final, Literal

import uvicorn
from starlette.types import ASGIApp

_START_TIMEOUT_S: Final = 60.0
_POLL_S: Final = 0.02


class PortInUse(Exception):
    """The port could not be bound; ``str(err)`` says which and why, in one line."""


class ServerDidNotStart(RuntimeError):
    """uvicorn stopped before serving (typically the app's lifespan startup failed)."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (it re-raises the signal after shutdown)."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int, *, setting: str = "KEEL_API_PORT") -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (``port=0``: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise PortInUse(
            f"cannot serve on {host}:{port}: {err.strerror}. Stop whatever holds it or pick another port "
            f"with {setting}"
        ) from None
    sock.set_inheritable(True)
    return sock


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


async def start_server(
    app: ASGIApp,
    sock: socket.socket,
    *,
    lifespan: Literal["on", "off"] = "on",
    graceful_shutdown_s: int = 10,
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """uvicorn serving ``app`` on ``sock``, returned once it accepts requests.

    Stop it with ``server.should_exit = True`` and ``await task`` (:func:`stop_server`).
    """
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=graceful_shutdown_s,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()  # raises what uvicorn raised, if anything
            raise ServerDidNotStart(f"the server on port {bound_port(sock)} stopped before serving")
        if asyncio.get_running_loop().time() > deadline:
            await stop_server(server, task)
            raise ServerDidNotStart(f"the server on port {bound_port(sock)} did not start")
        await asyncio.sleep(_POLL_S)
    return server, task


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


@asynccontextmanager
async def serving(
    app: ASGIApp,
    sock: socket.socket,
    *,
    lifespan: Literal["on", "off"] = "on",
    graceful_shutdown_s: int = 10,
) -> AsyncIterator[uvicorn.Server]:
    """``app`` served on ``sock`` for the duration of the block (drained on exit)."""
    server, task = await start_server(app, sock, lifespan=lifespan, graceful_shutdown_s=graceful_shutdown_s)
    try:
        yield server
    finally:
        await stop_server(server, task)
