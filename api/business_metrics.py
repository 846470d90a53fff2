"""Business gauges, read from Postgres by the API every ``KEEL_METRICS_REFRESH_S``:

* ``keel_users_active{window}``: people who started a turn in the last hour / day
  (``window`` = ``1h``, ``1d``)
* ``keel_documents{status}``: documents by status (processing, ready, failed, deleting)
* ``keel_failed_operations{status}``: the failed-operations view (open, retried,
  resolved); ``open`` is the depth an operator has to look at

Every API replica exports the same figures: aggregate them with ``max``, not ``sum``.
Counters of events (turns, sessions started, queries, ingestions) are counted where
they happen, in the workers (docs/observability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import structlog
from prometheus_client import Gauge

log = structlog.get_logger(__name__)

USERS_ACTIVE = Gauge("keel_users_active", "People who started a chat turn within the window", ["window"])
DOCUMENTS = Gauge("keel_documents", "Documents by status", ["status"])
FAILED_OPERATIONS = Gauge("keel_failed_operations", "Failed operations by status", ["status"])

_WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
_DOCUMENT_STATUSES = ("processing", "ready", "failed", "deleting")
_FAILED_STATUSES = ("open", "retried", "resolved")


async def refresh_business_metrics(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for label, interval in _WINDOWS.items():
            active = await conn.fetchval(
                "SELECT count(DISTINCT user_id) FROM chat_turns WHERE created_at > now() - $1::interval",
                interval,
            )
            USERS_ACTIVE.labels(label).set(int(active or 0))
        docs = dict(await conn.fetch("SELECT status, count(*) FROM documents GROUP BY status"))
        for status in _DOCUMENT_STATUSES:
            DOCUMENTS.labels(status).set(int(docs.get(status, 0)))
        failed = dict(await conn.fetch("SELECT status, count(*) FROM failed_operations GROUP BY status"))
        for status in _FAILED_STATUSES:
            FAILED_OPERATIONS.labels(status).set(int(failed.get(status, 0)))


@contextlib.asynccontextmanager
async def refreshing_business_metrics(pool: asyncpg.Pool, interval_s: float) -> AsyncIterator[None]:
    """Refresh the gauges now and every ``interval_s`` for the block; a failed refresh is
    logged and the gauges keep their last values (the next one tries again)."""

    async def loop() -> None:
        while True:
            try:
                await refresh_business_metrics(pool)
            except (asyncpg.PostgresError, OSError) as err:
                log.warning("metrics.refresh_failed", error=str(err))
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(loop(), name="keel-business-metrics")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
