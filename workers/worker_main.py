"""``keel worker [--queues chat,retrieval,…]``: run those task-queue groups' workers
(default: all) until SIGINT/SIGTERM, then drain (workers/queues.py ``shutdown_options``).

With ``KEEL_WORKER_HEALTH_PORT`` the process serves ``/health/live``, ``/health/ready``
and ``/metrics`` (workers/health_server.py); readiness turns 503 as soon as the drain
starts, so no new work is routed here while running activities finish.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Collection

import structlog
from temporalio.worker import Worker

from infra.db.migrate import apply_migrations
from infra.knowledge import open_knowledge
from infra.settings import Settings
from infra.temporal_client import connect_temporal
from infra.temporal_setup import ensure_search_attributes
from workers.health_server import serving_health
from workers.queues import QUEUE_GROUPS, task_queue_of
from workers.runtime import running_workers

log = structlog.get_logger(__name__)


class _Readiness:
    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.state = "starting"

    def __call__(self) -> str | None:
        if self.state != "running":
            return f"worker {self.state}"
        stopped = [w.task_queue for w in self.workers if not w.is_running or w.is_shutdown]
        return f"not polling: {', '.join(stopped)}" if stopped else None


async def run_worker(settings: Settings, groups: Collection[str] = QUEUE_GROUPS) -> None:
    readiness = _Readiness()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serving_health(settings, readiness) as health_port:
        if settings.database_url:
            await apply_migrations(settings.database_url)
        client = await connect_temporal(settings)
        await ensure_search_attributes(client, settings.temporal_namespace)
        async with (
            open_knowledge(settings) as knowledge,
            running_workers(client, settings, knowledge, groups) as workers,
        ):
            readiness.workers, readiness.state = workers, "running"
            log.info(
                "worker.started",
                groups=sorted(groups),
                task_queues=sorted({w.task_queue for w in workers}),
                health_port=health_port,
            )
            await stop.wait()
            readiness.state = "draining"
            log.info(
                "worker.draining",
                grace_s=settings.worker_shutdown_grace_s,
                task_queues=[task_queue_of(settings, g) for g in sorted(groups)],
            )
        log.info("worker.stopped")
