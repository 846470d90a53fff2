"""Retention on the real Temporal dev server: rows older than their event's retention
are purged in batches by AuditRetentionWorkflow (run directly and through the
``keel-audit-retention`` schedule), tombstones keep the chain verifiable, and the
purge is itself recorded as ``audit.purged`` with counts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.client import Client

from core.models.audit import AuditEntry, AuditEvent
from core.models.audit_jobs import AuditRetentionInput
from infra.audit.log import AuditLog
from infra.settings import Settings
from tests.audit.conftest import keel_audit
from workers.audit_worker import RETENTION_SCHEDULE_ID, retention_input, running_audit_worker
from workflows.audit_retention import AuditRetentionWorkflow

pytestmark = pytest.mark.slow


async def _backdated(audit: AuditLog, event: AuditEvent, days: float, *, key: bytes, user: str = "u") -> int:
    fields = {
        "event": event.value,
        "user_id": user,
        "session_id": None,
        "trace_id": None,
        "request_id": None,
        "outcome": "success",
        "resource_type": None,
        "resource_id": None,
        "details": {"days_old": days},
        "dedupe_key": None,
    }
    stored = await audit.repository.append(
        fields, hmac_key=key, occurred_at=datetime.now(UTC) - timedelta(days=days)
    )
    assert stored is not None
    return stored.seq


async def _events(pool: asyncpg.Pool, event: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch("SELECT seq, details FROM audit_events WHERE event = $1 ORDER BY seq", event)
    )


async def test_retention_purges_by_event_age_and_keeps_the_chain_verifiable(
    audit_settings: Settings, audit_pool: asyncpg.Pool, temporal_client: Client
) -> None:
    settings = audit_settings.model_copy(
        update={"audit_retention_by_event": {"session.started": 2, "tool.invoked": 365}}
    )
    key = settings.resolved_audit_hmac_key
    audit = AuditLog(audit_pool, hmac_key=key)
    await audit.record(AuditEntry(event=AuditEvent.LOGIN, user_id="fresh"))
    expired = [await _backdated(audit, AuditEvent.ACCESS_DENIED, 120, key=key) for _ in range(23)]
    expired.append(await _backdated(audit, AuditEvent.DOCUMENT_UPLOADED, 200, key=key))
    kept_30_days = await _backdated(audit, AuditEvent.DOCUMENT_UPLOADED, 30, key=key)
    expired.append(await _backdated(audit, AuditEvent.SESSION_STARTED, 3, key=key))  # its own 2 days
    kept_by_event = await _backdated(audit, AuditEvent.TOOL_INVOKED, 100, key=key)  # its own 365 days
    await audit.record(AuditEntry(event=AuditEvent.LOGOUT, user_id="fresh"))

    async with running_audit_worker(temporal_client, settings):
        result = await temporal_client.execute_workflow(
            AuditRetentionWorkflow.run,
            AuditRetentionInput(
                default_days=settings.audit_retention_days,
                days_by_event=settings.audit_retention_by_event,
                batch_size=7,  # several batches
            ),
            id=f"audit-retention-test-{uuid.uuid4().hex[:8]}",
            task_queue=settings.audit_task_queue,
        )
        assert result.purged == 25
        assert result.by_event == {"access.denied": 23, "document.uploaded": 1, "session.started": 1}

        live = {r["seq"] for r in await audit_pool.fetch("SELECT seq FROM audit_events")}
        gone = {r["seq"] for r in await audit_pool.fetch("SELECT seq FROM audit_tombstones")}
        assert gone == set(expired)
        assert {kept_30_days, kept_by_event} <= live and not live & gone
        [purged] = await _events(audit_pool, "audit.purged")
        assert purged["details"]["purged"] == 25
        assert purged["details"]["by_event"]["access.denied"] == 23
        # Tombstones hold no personal data and cannot be removed either.
        columns = {
            r["column_name"]
            for r in await audit_pool.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'audit_tombstones'"
            )
        }
        assert not columns & {"user_id", "session_id", "details", "resource_id"}
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit_pool.execute("DELETE FROM audit_tombstones")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit_pool.execute("DELETE FROM audit_events WHERE seq = $1", kept_30_days)

        verified = keel_audit(settings, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "25 purged rows linked by tombstones" in verified.stdout

        # The schedule runs the same workflow with the settings' retention.
        late = await _backdated(audit, AuditEvent.SESSION_STARTED, 5, key=key)
        await temporal_client.get_schedule_handle(RETENTION_SCHEDULE_ID).trigger()
        for _ in range(600):
            if len(await _events(audit_pool, "audit.purged")) == 2:
                break
            await asyncio.sleep(0.1)
        second = (await _events(audit_pool, "audit.purged"))[-1]
        assert second["details"]["purged"] == 1 and second["details"]["days_by_event"]["session.started"] == 2
        assert await audit_pool.fetchval("SELECT count(*) FROM audit_tombstones WHERE seq = $1", late) == 1

    final = keel_audit(settings, "verify")
    assert final.returncode == 0, final.stdout + final.stderr


def test_a_retention_setting_naming_an_unknown_event_is_refused() -> None:
    base = Settings(env="test", audit_retention_by_event={"session.started": 7})
    assert retention_input(base).days_by_event == {"session.started": 7}
    with pytest.raises(ValueError, match="unknown events"):
        retention_input(base.model_copy(update={"audit_retention_by_event": {"sesion.started": 7}}))
    with pytest.raises(ValueError, match="at least 1"):
        retention_input(base.model_copy(update={"audit_retention_by_event": {"session.started": 0}}))
