"""``keel api``: serve the FastAPI app with uvicorn; with ``KEEL_METRICS_PORT``,
``/metrics`` is served on that port (same host) instead of the API port."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Generator
from contextlib import contextmanager

import uvicorn

from api.main import create_app
from api.metrics import create_metrics_app
from infra.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: ``run_api`` stops every server it runs."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def api_servers(settings: Settings) -> list[uvicorn.Server]:
    """The API server, and the metrics server when ``KEEL_METRICS_PORT`` is set."""
    servers: list[uvicorn.Server] = [
        _Server(
            uvicorn.Config(
                create_app(settings),
                host=settings.api_host,
                port=settings.api_port,
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=10,
            )
        )
    ]
    if settings.metrics_port is not None:
        servers.append(
            _Server(
                uvicorn.Config(
                    create_metrics_app(settings),
                    host=settings.api_host,
                    port=settings.metrics_port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
            )
        )
    return servers


async def run_api(settings: Settings) -> None:
    servers = api_servers(settings)

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        stop()
