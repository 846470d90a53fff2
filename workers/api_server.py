"""Serving the API: the one harness behind ``keel api``, ``keel dev``, the tests and the benches.

``bind_socket`` binds the port first, so a port that is taken is one clear error
(:class:`PortInUse`) before anything else starts; ``serving`` runs uvicorn on that
socket until the block ends. uvicorn's own signal capture is off: the caller owns
SIGINT/SIGTERM and stops everything in order.

``keel api`` (``run_api``): the FastAPI app, and with ``KEEL_METRICS_PORT``,
``/metrics`` on that port (same host) instead of the API port.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Final, Literal

import uvicorn
from starlette.types import ASGIApp

from api.metrics import create_metrics_app
from infra.settings import Settings
from workers.api_app import build_api

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


async def wait_for_stop_signal() -> None:
    """Return on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@asynccontextmanager
async def serving_api(settings: Settings, *, api_sock: socket.socket | None = None) -> AsyncIterator[None]:
    """The API of ``settings`` (on ``api_sock``, or bound here), and its metrics server when
    ``KEEL_METRICS_PORT`` is set, for the duration of the block."""
    metrics_sock = (
        bind_socket(settings.api_host, settings.metrics_port, setting="KEEL_METRICS_PORT")
        if settings.metrics_port is not None
        else None
    )
    sock = api_sock or bind_socket(settings.api_host, settings.api_port)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(serving(build_api(settings), sock))
        if metrics_sock is not None:
            await stack.enter_async_context(
                serving(create_metrics_app(settings), metrics_sock, lifespan="off")
            )
        yield


async def run_api(settings: Settings) -> None:
    """``keel api``: serve until SIGINT/SIGTERM."""
    async with serving_api(settings):
        await wait_for_stop_signal()
