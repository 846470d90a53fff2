"""Inputs and results of the audit trail's scheduled jobs (retention, export).

Workflows read no settings: the schedule's action carries the retention and
export configuration, refreshed (create-or-update) every time a worker starts.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AuditRetentionInput(BaseModel):
    default_days: int = Field(default=90, ge=1)
    days_by_event: dict[str, int] = Field(default_factory=dict)
    batch_size: int = Field(default=1000, ge=1, le=50_000)
    # Set by the first run and carried through continue-as-new:
    as_of: datetime | None = None
    purge_run: str | None = None


class AuditRetentionResult(BaseModel):
    purged: int
    by_event: dict[str, int] = Field(default_factory=dict)


class PurgeBatchInput(BaseModel):
    as_of: datetime
    default_days: int
    days_by_event: dict[str, int] = Field(default_factory=dict)
    batch_size: int
    purge_run: str


class RecordPurgeInput(BaseModel):
    as_of: datetime
    default_days: int
    days_by_event: dict[str, int] = Field(default_factory=dict)
    purge_run: str


class AuditExportInput(BaseModel):
    sinks: list[str]
    batch_size: int = Field(default=500, ge=1, le=10_000)
    max_batches: int = Field(default=100, ge=1)


class AuditExportResult(BaseModel):
    sent: dict[str, int] = Field(default_factory=dict)


class ExportBatchInput(BaseModel):
    sink: str
    batch_size: int


class ExportBatchResult(BaseModel):
    sent: int
    last_seq: int
