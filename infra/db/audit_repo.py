"""The audit trail in Postgres (migration 0005): chained appends, filtered reads,
the chain walk for verification, retention purges and export cursors.

Only :meth:`AuditRepository.append` writes rows; it holds the chain head row
(``SELECT ... FOR UPDATE``) for the length of its transaction, so appends are
serialised and ``seq`` has no gaps.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from infra.audit.chain import GENESIS_HASH, row_hash

_COLUMNS = (
    "seq, id, occurred_at, event, user_id, session_id, trace_id, request_id, outcome, "
    "resource_type, resource_id, details, dedupe_key, prev_hash, hash"
)
_NAMES = tuple(_COLUMNS.split(", "))


class AuditRecord(BaseModel):
    seq: int
    id: str
    occurred_at: datetime
    event: str
    user_id: str | None
    session_id: str | None
    trace_id: str | None
    request_id: str | None
    outcome: str
    resource_type: str | None
    resource_id: str | None
    details: dict[str, Any]
    dedupe_key: str | None
    prev_hash: str
    hash: str

    def json_line(self) -> str:
        """The export format: one JSON object per line (JSON lines)."""
        return self.model_dump_json()


@dataclass(frozen=True)
class AuditFilter:
    """What an admin read or an export selects; ``None`` selects everything."""

    user_id: str | None = None
    event: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, first_param: int) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("user_id", "=", self.user_id),
            ("event", "=", self.event),
            ("occurred_at", ">=", self.since),
            ("occurred_at", "<", self.until),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} {op} ${first_param + len(params) - 1}")
        return clauses, params


@dataclass(frozen=True)
class ChainHead:
    last_seq: int
    last_hash: str


def _record(row: asyncpg.Record) -> AuditRecord:
    return AuditRecord.model_validate(dict(row))


class AuditRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------------ writes
    async def append(
        self, fields: dict[str, Any], *, hmac_key: bytes, occurred_at: datetime | None = None
    ) -> AuditRecord | None:
        """Chain one row; ``None`` when a row with this ``dedupe_key`` exists (nothing written).

        ``fields``: the row's columns except ``seq``, ``id``, ``occurred_at`` and the hashes
        (those left out are null; ``event`` and ``outcome`` are required).
        ``occurred_at`` defaults to the database clock at the moment the chain head is
        held, so times follow ``seq``; tests of retention pass an older one.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            head = await conn.fetchrow(
                "SELECT last_seq, last_hash, clock_timestamp() AS now FROM audit_chain_head"
                " WHERE id FOR UPDATE"
            )
            if head is None:
                raise RuntimeError("the audit chain head is missing (migration 0005 not applied?)")
            dedupe_key = fields.get("dedupe_key")
            if dedupe_key is not None and await conn.fetchval(
                "SELECT 1 FROM audit_events WHERE dedupe_key = $1", dedupe_key
            ):
                return None
            row: dict[str, Any] = {
                **dict.fromkeys(_NAMES),
                "details": {},
                **fields,
                "seq": int(head["last_seq"]) + 1,
                "id": uuid.uuid4().hex,
                "occurred_at": occurred_at or head["now"],
                "prev_hash": str(head["last_hash"]),
            }
            row["hash"] = row_hash(row, key=hmac_key)
            await conn.execute(
                f"INSERT INTO audit_events ({_COLUMNS}) VALUES"  # noqa: S608 (constant columns)
                " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                *(row[name] for name in _NAMES),
            )
            await conn.execute(
                "UPDATE audit_chain_head SET last_seq = $1, last_hash = $2 WHERE id",
                row["seq"],
                row["hash"],
            )
        return AuditRecord.model_validate(row)

    # ------------------------------------------------------------------- reads
    async def search(
        self, flt: AuditFilter, *, limit: int, before_seq: int | None = None
    ) -> list[AuditRecord]:
        """Newest first; ``before_seq`` continues a previous page."""
        clauses, params = flt.where(1)
        if before_seq is not None:
            params.append(before_seq)
            clauses.append(f"seq < ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM audit_events {where} ORDER BY seq DESC LIMIT ${len(params)}",  # noqa: S608
            *params,
        )
        return [_record(r) for r in rows]

    async def after(self, after_seq: int, flt: AuditFilter | None = None, *, limit: int) -> list[AuditRecord]:
        """Oldest first, ``seq > after_seq``: pages of an export."""
        clauses, params = (flt or AuditFilter()).where(3)
        where = "".join(f" AND {c}" for c in clauses)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM audit_events WHERE seq > $1{where} ORDER BY seq LIMIT $2",  # noqa: S608
            after_seq,
            limit,
            *params,
        )
        return [_record(r) for r in rows]

    async def iterate(self, flt: AuditFilter, *, page_size: int = 500) -> AsyncIterator[AuditRecord]:
        """Every matching row, oldest first, one page (and one pooled connection) at a time."""
        after_seq = 0
        while True:
            page = await self.after(after_seq, flt, limit=page_size)
            for record in page:
                yield record
            if len(page) < page_size:
                return
            after_seq = page[-1].seq

    async def head(self) -> ChainHead:
        row = await self._pool.fetchrow("SELECT last_seq, last_hash FROM audit_chain_head WHERE id")
        if row is None:
            return ChainHead(last_seq=0, last_hash=GENESIS_HASH)
        return ChainHead(last_seq=int(row["last_seq"]), last_hash=str(row["last_hash"]))

    async def first_beyond_head(self) -> int | None:
        """The lowest ``seq`` above the chain head (a row the head does not cover), if any."""
        value = await self._pool.fetchval(
            "SELECT min(seq) FROM (SELECT seq FROM audit_events UNION ALL SELECT seq FROM audit_tombstones) s"
            " WHERE seq > (SELECT last_seq FROM audit_chain_head WHERE id)"
        )
        return int(value) if value is not None else None

    async def chain(self, *, up_to: int, page_size: int = 2000) -> AsyncIterator[tuple[dict[str, Any], bool]]:
        """Rows and tombstones with ``seq <= up_to``, in ``seq`` order: ``(row, is_tombstone)``.
        (Rows appended after the caller read the chain head are left for the next walk.)"""
        after_seq = 0
        while True:
            rows = await self._pool.fetch(
                f"SELECT * FROM (SELECT {_COLUMNS}, false AS tombstone FROM audit_events"  # noqa: S608
                " WHERE seq > $1 AND seq <= $3 ORDER BY seq LIMIT $2) live UNION ALL SELECT * FROM"
                " (SELECT seq, NULL, occurred_at, event, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
                " NULL::jsonb, NULL, prev_hash, hash, true FROM audit_tombstones WHERE seq > $1 AND seq <= $3"
                " ORDER BY seq LIMIT $2) gone ORDER BY seq, tombstone LIMIT $2",
                after_seq,
                page_size,
                up_to,
            )
            for row in rows:
                data = dict(row)
                yield data, bool(data.pop("tombstone"))
            if len(rows) < page_size:
                return
            after_seq = int(rows[-1]["seq"])

    # -------------------------------------------------------------- retention
    async def purge_batch(
        self,
        *,
        as_of: datetime,
        default_days: int,
        days_by_event: dict[str, int],
        batch_size: int,
        run_id: str,
    ) -> int:
        """Delete up to ``batch_size`` rows older than their event's retention (tombstones are
        written by the database trigger, tagged with ``run_id``). Returns how many went."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL keel.audit_retention = 'on'")
            await conn.execute("SELECT set_config('keel.audit_purge_run', $1, true)", run_id)
            status = await conn.execute(
                "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events"
                " WHERE occurred_at < $1::timestamptz - make_interval(days =>"
                " COALESCE(($2::jsonb ->> event)::int, $3)) ORDER BY seq LIMIT $4)",
                as_of,
                days_by_event,
                default_days,
                batch_size,
            )
        return int(str(status).rsplit(" ", 1)[-1])

    async def purged_by_event(self, run_id: str) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT event, count(*) AS n FROM audit_tombstones WHERE purge_run = $1 GROUP BY event", run_id
        )
        return {str(r["event"]): int(r["n"]) for r in rows}

    # ------------------------------------------------------------------ export
    async def export_cursor(self, sink: str) -> int:
        value = await self._pool.fetchval("SELECT last_seq FROM audit_export_cursors WHERE sink = $1", sink)
        return int(value) if value is not None else 0

    async def advance_export_cursor(self, sink: str, *, from_seq: int, to_seq: int) -> bool:
        """Move the cursor from ``from_seq`` to ``to_seq``; False when someone else moved it."""
        status = await self._pool.execute(
            "INSERT INTO audit_export_cursors (sink, last_seq) VALUES ($1, $3)"
            " ON CONFLICT (sink) DO UPDATE SET last_seq = EXCLUDED.last_seq, updated_at = now()"
            " WHERE audit_export_cursors.last_seq = $2",
            sink,
            from_seq,
            to_seq,
        )
        return str(status).endswith(" 1")
