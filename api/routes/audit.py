"""The audit trail for auditors (``view_audit_logs``): filtered, paginated reads and
a JSON-lines export. Rows are append-only and hash-chained (docs/audit.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import AuditViewer, ResourcesDep
from api.errors import ApiError
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from infra.db.audit_repo import AuditFilter, AuditRecord

router = APIRouter(prefix="/api/v1/admin/audit", tags=["audit"])

NDJSON = "application/x-ndjson"


class AuditEventView(BaseModel):
    seq: int = Field(description="Position in the hash chain (no gaps except purged rows)")
    id: str
    occurred_at: datetime
    event: str
    user_id: str | None
    session_id: str | None
    trace_id: str | None
    request_id: str | None
    outcome: str = Field(description="success | failure | denied")
    resource_type: str | None
    resource_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str = Field(description="HMAC-SHA256 over the row and prev_hash")


class AuditEventList(BaseModel):
    events: list[AuditEventView] = Field(description="Newest first")
    next_before_seq: int | None = Field(description="Pass as before_seq for the next page; null at the end")


class AuditChainView(BaseModel):
    ok: bool = Field(description="True when every link of the chain holds")
    rows: int = Field(description="Live rows whose hash and link were checked")
    tombstones: int = Field(description="Purged rows whose link was checked (their content is gone)")
    last_seq: int = Field(description="The last seq checked")
    bad_seq: int | None = Field(description="The first seq whose link does not hold; null when ok")
    reason: str | None = Field(description="Why that seq is bad (edited, missing, …); null when ok")
    checked_at: datetime


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _view(record: AuditRecord) -> AuditEventView:
    return AuditEventView.model_validate(record.model_dump(exclude={"dedupe_key"}))


def _filter(
    user_id: Annotated[str | None, Query(max_length=256, description="Only this user's events")] = None,
    event: Annotated[AuditEvent | None, Query(description="Only this event")] = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive; UTC if no zone)")] = None,
    until: Annotated[
        datetime | None, Query(description="Until this time (exclusive; UTC if no zone)")
    ] = None,
) -> AuditFilter:
    """The query's filters (the same for reading and exporting)."""
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise ApiError(ErrorCode.INVALID_REQUEST, "since must be before until")
    return AuditFilter(user_id=user_id, event=event.value if event else None, since=since, until=until)


FilterDep = Annotated[AuditFilter, Depends(_filter)]


@router.get("", operation_id="list_audit_events", response_model=AuditEventList)
async def list_audit_events(
    principal: AuditViewer,
    resources: ResourcesDep,
    flt: FilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_seq: Annotated[int | None, Query(ge=1, description="Cursor: events before this seq")] = None,
) -> AuditEventList:
    """Audit events, newest first, filtered by user, event and time range."""
    records = await resources.audit.repository.search(flt, limit=limit, before_seq=before_seq)
    next_before = records[-1].seq if len(records) == limit else None
    return AuditEventList(events=[_view(r) for r in records], next_before_seq=next_before)


@router.get("/verify", operation_id="verify_audit_chain", response_model=AuditChainView)
async def verify_audit_chain(principal: AuditViewer, resources: ResourcesDep) -> AuditChainView:
    """Walk the whole hash chain with the API's key, as ``keel audit verify`` does: ok, or the
    first bad sequence number and why."""
    result = await resources.audit.verify()
    return AuditChainView(
        ok=result.ok,
        rows=result.rows,
        tombstones=result.tombstones,
        last_seq=result.last_seq,
        bad_seq=result.bad_seq,
        reason=result.reason,
        checked_at=datetime.now(UTC),
    )


@router.get(
    "/export",
    operation_id="export_audit_events",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "One audit row per line, oldest first"}},
)
async def export_audit_events(
    principal: AuditViewer, resources: ResourcesDep, flt: FilterDep
) -> StreamingResponse:
    """The matching rows as JSON lines (the same format as ``keel audit export``); the export
    itself is recorded as ``audit.exported``."""
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.AUDIT_EXPORTED,
            user_id=principal.user_id,
            resource_type="audit_trail",
            details={
                "via": "api",
                "filter": {
                    "user_id": flt.user_id,
                    "event": flt.event,
                    "since": flt.since.isoformat() if flt.since else None,
                    "until": flt.until.isoformat() if flt.until else None,
                },
            },
        )
    )
    repo = resources.audit.repository

    async def lines() -> AsyncIterator[bytes]:
        async for record in repo.iterate(flt):
            yield (record.json_line() + "\n").encode()

    return StreamingResponse(lines(), media_type=NDJSON)
