"""``keel worker``: run the chat, ingest and audit workers until SIGINT/SIGTERM (graceful shutdown)."""

from __future__ import annotations

import asyncio
import signal

import structlog

from infra.db.migrate import apply_migrations
from infra.knowledge import open_knowledge
from infra.settings import Settings
from infra.temporal_client import connect_temporal
from infra.temporal_setup import ensure_search_attributes
from workers.runtime import running_workers

log = structlog.get_logger(__name__)


async def run_worker(settings: Settings) -> None:
    if settings.database_url:
        await apply_migrations(settings.database_url)
    client = await connect_temporal(settings)
    await ensure_search_attributes(client, settings.temporal_namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_knowledge(settings) as knowledge, running_workers(client, settings, knowledge):
        log.info(
            "worker.started",
            task_queues=[settings.chat_task_queue, settings.ingest_task_queue, settings.audit_task_queue],
        )
        await stop.wait()
        log.info("worker.stopping")
