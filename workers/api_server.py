"""Serving the API: ``keel api``, ``keel dev``, the tests and the benches (the uvicorn
harness itself is workers/serving.py).

``keel api`` (``run_api``): the FastAPI app, and with ``KEEL_METRICS_PORT``,
``/metrics`` on that port (same host) instead of the API port.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from api.metrics import create_metrics_app
from infra.settings import Settings
from workers.api_app import build_api
from workers.serving import (
    PortInUse,
    ServerDidNotStart,
    bind_socket,
    bound_port,
    serving,
    start_server,
    stop_server,
)

__all__ = [
    "PortInUse",
    "ServerDidNotStart",
    "bind_socket",
    "bound_port",
    "run_api",
    "serving",
    "serving_api",
    "start_server",
    "stop_server",
    "wait_for_stop_signal",
]


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
