"""Replay committed histories of the audit workflows with today's code.

Until the first release a change that breaks their replay re-records them
(docs/versioning.md): ``KEEL_RECORD_HISTORIES=1 PYTHONPATH=$PWD .venv/bin/python -m pytest
tests/audit/test_replay.py``. After a release it goes behind ``workflow.patched()``
or Worker Versioning instead.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.models.audit import AuditEntry, AuditEvent
from core.models.audit_jobs import AuditExportInput, AuditRetentionInput
from infra.audit.log import AuditLog
from infra.settings import Settings
from tests.audit.test_export import WebhookReceiver
from workers.audit_worker import running_audit_worker
from workflows.audit_export import AuditExportWorkflow
from workflows.audit_retention import AuditRetentionWorkflow

HISTORIES = Path(__file__).parent / "histories"
WORKFLOWS = [AuditRetentionWorkflow, AuditExportWorkflow]


def _histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_histories_are_committed() -> None:
    assert {p.stem for p in _histories()} >= {"audit_retention", "audit_export"}


@pytest.mark.parametrize("path", _histories(), ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter).replay_workflow(history)


@pytest.mark.skipif(not os.environ.get("KEEL_RECORD_HISTORIES"), reason="records histories on demand")
async def test_record_histories(
    audit_settings: Settings, audit_pool: asyncpg.Pool, temporal_client: Client
) -> None:
    with WebhookReceiver() as webhook:
        settings = audit_settings.model_copy(
            update={"audit_webhook_url": webhook.url, "audit_webhook_secret": SecretStr("s")}
        )
        key = settings.resolved_audit_hmac_key
        audit = AuditLog(audit_pool, hmac_key=key)
        for days in (200, 150, 1):
            fields = {"event": "auth.login", "user_id": "u", "outcome": "success", "details": {}}
            await audit.repository.append(
                fields, hmac_key=key, occurred_at=datetime.now(UTC) - timedelta(days=days)
            )
        await audit.record(AuditEntry(event=AuditEvent.LOGOUT, user_id="u"))

        async def save(name: str, workflow_id: str) -> None:
            history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
            payload = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
            HISTORIES.mkdir(exist_ok=True)
            (HISTORIES / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")

        async with running_audit_worker(temporal_client, settings):
            retention_id = f"audit-retention-{uuid.uuid4().hex[:8]}"
            await temporal_client.execute_workflow(
                AuditRetentionWorkflow.run,
                AuditRetentionInput(default_days=90, batch_size=1),
                id=retention_id,
                task_queue=settings.audit_task_queue,
            )
            export_id = f"audit-export-{uuid.uuid4().hex[:8]}"
            await temporal_client.execute_workflow(
                AuditExportWorkflow.run,
                AuditExportInput(sinks=["webhook"], batch_size=2),
                id=export_id,
                task_queue=settings.audit_task_queue,
            )
        await save("audit_retention", retention_id)
        await save("audit_export", export_id)
    assert len(webhook.events()) == 3  # 2 kept logins/logout + audit.purged
