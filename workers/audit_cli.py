"""``keel audit verify`` and ``keel audit export``: the audit trail from a shell.

``verify`` walks the whole chain (rows and retention tombstones, in ``seq``
order) with ``KEEL_AUDIT_HMAC_KEY`` (else ``KEEL_SECRET_KEY``) and exits 0 with
the number of rows verified, or 1 naming the first bad sequence number.
``export`` writes the matching rows to stdout as JSON lines, oldest first, and
records the export as an ``audit.exported`` event. Exit 2: a usage or
configuration error (no ``KEEL_DATABASE_URL``, no audit table).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime
from typing import TextIO

import asyncpg

from core.models.audit import AuditEntry, AuditEvent
from infra.audit.chain import VerifyResult
from infra.audit.log import AuditLog
from infra.db.audit_repo import AuditFilter
from infra.db.pool import create_pool
from infra.settings import Settings

EXIT_OK, EXIT_BROKEN, EXIT_ERROR = 0, 1, 2


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event(text: str) -> str:
    try:
        return AuditEvent(text).value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"unknown event {text!r}; one of: {', '.join(e.value for e in AuditEvent)}"
        ) from exc


def add_audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keel audit …`` to the ``keel`` parser."""
    audit = sub.add_parser("audit", help="verify or export the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad seq")
    export = audit_sub.add_parser("export", help="write audit rows as JSON lines to stdout")
    export.add_argument("--since", type=_time, help="from this time (inclusive, ISO-8601; UTC if no zone)")
    export.add_argument("--until", type=_time, help="until this time (exclusive, ISO-8601; UTC if no zone)")
    export.add_argument("--event", type=_event, help="only this event, e.g. document.shared")
    export.add_argument("--user", help="only this user id")


async def verify_chain(pool: asyncpg.Pool, *, hmac_key: bytes) -> VerifyResult:
    return await AuditLog(pool, hmac_key=hmac_key).verify()


async def _verify(settings: Settings, database_url: str, out: TextIO) -> int:
    pool = await create_pool(database_url, max_size=2)
    try:
        result = await verify_chain(pool, hmac_key=settings.resolved_audit_hmac_key)
    finally:
        await pool.close()
    if result.ok:
        out.write(
            f"audit chain ok: {result.rows} rows verified"
            f" ({result.tombstones} purged rows linked by tombstones), last seq {result.last_seq}\n"
        )
        return EXIT_OK
    sys.stderr.write(f"keel audit verify: chain broken at seq {result.bad_seq}: {result.reason}\n")
    out.write(f"audit chain BROKEN at seq {result.bad_seq} ({result.rows} rows verified before it)\n")
    return EXIT_BROKEN


async def _export(args: argparse.Namespace, settings: Settings, database_url: str, out: TextIO) -> int:
    flt = AuditFilter(user_id=args.user, event=args.event, since=args.since, until=args.until)
    pool = await create_pool(database_url, max_size=2)
    try:
        audit = AuditLog(pool, hmac_key=settings.resolved_audit_hmac_key)
        count = 0
        async for record in audit.repository.iterate(flt):
            out.write(record.json_line() + "\n")
            count += 1
        out.flush()
        await audit.record(
            AuditEntry(
                event=AuditEvent.AUDIT_EXPORTED,
                user_id=f"cli:{getpass.getuser()}",
                resource_type="audit_trail",
                details={
                    "via": "cli",
                    "rows": count,
                    "filter": {
                        "user_id": flt.user_id,
                        "event": flt.event,
                        "since": flt.since.isoformat() if flt.since else None,
                        "until": flt.until.isoformat() if flt.until else None,
                    },
                },
            )
        )
    finally:
        await pool.close()
    return EXIT_OK


def run_audit(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    if not settings.database_url:
        sys.stderr.write("keel audit: KEEL_DATABASE_URL is not set\n")
        return EXIT_ERROR
    try:
        if args.audit_command == "verify":
            return asyncio.run(_verify(settings, settings.database_url, stream))
        return asyncio.run(_export(args, settings, settings.database_url, stream))
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
        sys.stderr.write(f"keel audit: no audit trail in this database (run `keel migrate`): {exc}\n")
        return EXIT_ERROR
    except (OSError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"keel audit: database error: {exc}\n")
        return EXIT_ERROR
