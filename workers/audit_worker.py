"""The audit worker: retention and export workflows on the audit task queue, and
the two Temporal Schedules that run them.

* ``keel-audit-retention`` every ``KEEL_AUDIT_RETENTION_INTERVAL_S`` (default daily):
  :class:`AuditRetentionWorkflow` with ``KEEL_AUDIT_RETENTION_DAYS`` and
  ``KEEL_AUDIT_RETENTION_BY_EVENT``.
* ``keel-audit-export`` every ``KEEL_AUDIT_EXPORT_INTERVAL_S`` when a sink is
  configured (``KEEL_AUDIT_WEBHOOK_URL``, ``KEEL_AUDIT_SYSLOG_ADDRESS``); removed
  when none is.

Both are created or updated (idempotently) every time a worker starts, so a
changed setting takes effect with the next deployment; an operator's pause stays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.worker import Worker

from activities.audit import AuditActivities
from core.models.audit import AuditEvent
from core.models.audit_jobs import AuditExportInput, AuditRetentionInput
from infra.audit.log import AuditLog
from infra.audit.sinks import build_sinks
from infra.db.pool import create_pool
from infra.settings import Settings
from infra.temporal_setup import ensure_schedule, remove_schedule
from workers.queues import shutdown_options
from workflows.audit_export import AuditExportWorkflow
from workflows.audit_retention import AuditRetentionWorkflow

RETENTION_SCHEDULE_ID = "keel-audit-retention"
EXPORT_SCHEDULE_ID = "keel-audit-export"


@asynccontextmanager
async def audit_activities(settings: Settings) -> AsyncIterator[AuditActivities]:
    if not settings.database_url:
        raise RuntimeError("KEEL_DATABASE_URL must be set for the worker")
    pool = await create_pool(settings.database_url, max_size=4)
    sinks = build_sinks(settings)
    audit = AuditLog(pool, hmac_key=settings.resolved_audit_hmac_key)
    try:
        yield AuditActivities(audit=audit, repo=audit.repository, sinks=sinks)
    finally:
        for sink in sinks.values():
            await sink.aclose()
        await pool.close()


def build_audit_worker(client: Client, settings: Settings, activities: AuditActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.audit_task_queue,
        workflows=[AuditRetentionWorkflow, AuditExportWorkflow],
        activities=[activities.purge_expired, activities.record_purge, activities.export_batch],
        max_concurrent_activities=4,
        **shutdown_options(settings),
    )


def retention_input(settings: Settings) -> AuditRetentionInput:
    """The retention job's input; refuses unknown events and non-positive days (a typo would
    otherwise keep, or drop, an event's rows on the default schedule without a word)."""
    by_event = dict(settings.audit_retention_by_event)
    unknown = sorted(set(by_event) - {e.value for e in AuditEvent})
    if unknown:
        raise ValueError(f"KEEL_AUDIT_RETENTION_BY_EVENT names unknown events {unknown}")
    if any(days < 1 for days in by_event.values()):
        raise ValueError("KEEL_AUDIT_RETENTION_BY_EVENT: retention days must be at least 1")
    return AuditRetentionInput(default_days=settings.audit_retention_days, days_by_event=by_event)


def export_input(settings: Settings) -> AuditExportInput | None:
    sinks = [
        name
        for name, url in (("webhook", settings.audit_webhook_url), ("syslog", settings.audit_syslog_address))
        if url
    ]
    return AuditExportInput(sinks=sinks) if sinks else None


def _every(seconds: int, action: ScheduleActionStartWorkflow) -> Schedule:
    return Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_audit_schedules(client: Client, settings: Settings) -> None:
    await ensure_schedule(
        client,
        RETENTION_SCHEDULE_ID,
        _every(
            settings.audit_retention_interval_s,
            ScheduleActionStartWorkflow(
                AuditRetentionWorkflow.run,
                retention_input(settings),
                id=RETENTION_SCHEDULE_ID,
                task_queue=settings.audit_task_queue,
                execution_timeout=timedelta(seconds=max(settings.audit_retention_interval_s, 3600)),
            ),
        ),
    )
    export = export_input(settings)
    if export is None:
        await remove_schedule(client, EXPORT_SCHEDULE_ID)
        return
    await ensure_schedule(
        client,
        EXPORT_SCHEDULE_ID,
        _every(
            settings.audit_export_interval_s,
            ScheduleActionStartWorkflow(
                AuditExportWorkflow.run,
                export,
                id=EXPORT_SCHEDULE_ID,
                task_queue=settings.audit_task_queue,
                execution_timeout=timedelta(hours=1),
            ),
        ),
    )


@asynccontextmanager
async def running_audit_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """The audit worker, with its schedules brought up to date once it polls."""
    async with (
        audit_activities(settings) as activities,
        build_audit_worker(client, settings, activities) as worker,
    ):
        await ensure_audit_schedules(client, settings)
        yield worker
