"""``keel api``: serve the FastAPI app with uvicorn."""

from __future__ import annotations

import uvicorn

from api.main import create_app
from infra.settings import Settings


async def run_api(settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    await uvicorn.Server(config).serve()
