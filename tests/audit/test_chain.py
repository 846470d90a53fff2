"""The hash chain in a real Postgres: appends, deduplication, the append-only
triggers, and ``keel audit verify`` (the real command, in a child process)
catching an edited row, a deleted row and a reordered pair."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import structlog
from pydantic import SecretStr

from core.models.audit import AuditEntry, AuditEvent
from infra.audit.chain import GENESIS_HASH, ChainVerifier, canonical, normalise_details, row_hash
from infra.audit.log import AuditLog
from infra.settings import Settings
from tests.audit.conftest import keel_audit, keel_audit_json
from workers.audit_cli import verify_chain

KEY = b"test-audit-key"


def _settings(database_url: str) -> Settings:
    return Settings(env="test", database_url=database_url, audit_hmac_key=SecretStr(KEY.decode()))


async def _swap_seq(conn: asyncpg.Connection, a: int, b: int) -> None:
    await conn.execute("UPDATE audit_events SET seq = seq + 1000 WHERE seq IN ($1, $2)", a, b)
    await conn.execute("UPDATE audit_events SET seq = $1 WHERE seq = $2", b, a + 1000)
    await conn.execute("UPDATE audit_events SET seq = $1 WHERE seq = $2", a, b + 1000)


async def _fill(audit: AuditLog, n: int) -> None:
    for i in range(n):
        await audit.record(
            AuditEntry(
                event=AuditEvent.DOCUMENT_UPLOADED,
                user_id=f"user-{i % 3}",
                resource_type="document",
                resource_id=f"doc-{i}",
                details={"size_bytes": 100 + i, "ratio": 0.5, "whole": 2.0, "nested": {"k": [1, "x"]}},
            )
        )


# ------------------------------------------------------------------ pure parts
def test_canonical_form_is_stable_and_covers_every_field() -> None:
    row = {
        "seq": 3,
        "id": "a",
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "event": "document.uploaded",
        "user_id": "u",
        "details": {"b": 1, "a": 2.0},
        "prev_hash": GENESIS_HASH,
    }
    text = canonical(row).decode()
    assert text == canonical(dict(reversed(list(row.items())))).decode()
    assert '"a":2,"b":1' in text  # sorted keys; an integral float is written as jsonb reads it back
    assert '"occurred_at":"2026-01-02T03:04:05.000006+00:00"' in text
    assert row_hash(row, key=KEY) != row_hash({**row, "user_id": "v"}, key=KEY)
    assert row_hash(row, key=KEY) != row_hash(row, key=b"another key")
    assert normalise_details({"t": datetime(2026, 1, 1, tzinfo=UTC), "s": "a\x00b", "f": float("nan")}) == {
        "t": "2026-01-01T00:00:00.000000+00:00",
        "s": "ab",
        "f": "nan",
    }


def test_verifier_names_the_first_bad_link() -> None:
    rows = []
    prev = GENESIS_HASH
    for seq in range(1, 5):
        row = {"seq": seq, "id": str(seq), "event": "e", "prev_hash": prev, "outcome": "success"}
        row["hash"] = row_hash(row, key=KEY)
        prev = str(row["hash"])
        rows.append(row)

    def run(items: list[dict[str, object]], head_seq: int = 4, head_hash: str = prev) -> int | None:
        verifier = ChainVerifier(key=KEY)
        for item in items:
            verifier.add(item)
        return verifier.finish(head_seq=head_seq, head_hash=head_hash).bad_seq

    assert run(rows) is None
    assert run([rows[0], {**rows[1], "event": "x"}, rows[2], rows[3]]) == 2
    assert run([rows[0], rows[2], rows[3]]) == 2
    assert run(rows[:3]) == 4  # the tail was cut off: the head still points at seq 4


# ------------------------------------------------------------- in Postgres
async def test_appends_are_chained_deduplicated_and_gap_free(audit_pool: asyncpg.Pool) -> None:
    audit = AuditLog(audit_pool, hmac_key=KEY)
    entries = [AuditEntry(event=AuditEvent.LOGIN, user_id=f"u{i}") for i in range(20)]
    await asyncio.gather(*(audit.record(e) for e in entries))  # concurrent writers serialise on the head
    first = await audit.append(AuditEntry(event=AuditEvent.TOOL_INVOKED, user_id="u", dedupe_key="k-1"))
    again = await audit.append(AuditEntry(event=AuditEvent.TOOL_INVOKED, user_id="u", dedupe_key="k-1"))
    assert first is not None and again is None
    rows = await audit_pool.fetch("SELECT seq, prev_hash, hash FROM audit_events ORDER BY seq")
    assert [r["seq"] for r in rows] == list(range(1, 22))
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
    assert await audit_pool.fetchval("SELECT count(*) FROM audit_events WHERE dedupe_key = 'k-1'") == 1


async def test_a_rolled_back_append_leaves_no_gap(audit_pool: asyncpg.Pool) -> None:
    audit = AuditLog(audit_pool, hmac_key=KEY)
    await audit.record(AuditEntry(event=AuditEvent.LOGIN, user_id="a"))
    with pytest.raises(asyncpg.PostgresError):
        # Too big for the user index: the insert fails after the chain head was taken.
        await audit.record(AuditEntry(event=AuditEvent.LOGIN, user_id=os.urandom(8000).hex()))
    await audit.record(AuditEntry(event=AuditEvent.LOGIN, user_id="c"))
    seqs = [r["seq"] for r in await audit_pool.fetch("SELECT seq FROM audit_events ORDER BY seq")]
    assert seqs == [1, 2]


async def test_the_database_refuses_update_delete_and_truncate(audit_pool: asyncpg.Pool) -> None:
    audit = AuditLog(audit_pool, hmac_key=KEY)
    await _fill(audit, 3)
    async with audit_pool.acquire() as conn:
        for statement in (
            "UPDATE audit_events SET user_id = 'mallory' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 2",
            "TRUNCATE audit_events",
            "UPDATE audit_chain_head SET last_hash = 'x'",
            "DELETE FROM audit_chain_head",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"append-only|retention|forward"):
                await conn.execute(statement)
        # An insert that does not extend the chain head is refused too.
        with pytest.raises(asyncpg.IntegrityConstraintViolationError):
            await conn.execute(
                "INSERT INTO audit_events (seq, id, occurred_at, event, outcome, prev_hash, hash)"
                " VALUES (99, 'forged', now(), 'auth.login', 'success', 'x', 'y')"
            )
    assert await audit_pool.fetchval("SELECT count(*) FROM audit_events") == 3
    assert await audit_pool.fetchval("SELECT user_id FROM audit_events WHERE seq = 2") == "user-1"


async def test_keel_audit_verify_passes_on_an_untouched_chain(
    audit_pool: asyncpg.Pool, audit_db: str
) -> None:
    await _fill(AuditLog(audit_pool, hmac_key=KEY), 5)
    done = keel_audit(_settings(audit_db), "verify")
    assert done.returncode == 0, done.stderr
    assert "5 rows verified" in done.stdout


async def test_keel_audit_verify_fails_naming_an_edited_row(audit_pool: asyncpg.Pool, audit_db: str) -> None:
    await _fill(AuditLog(audit_pool, hmac_key=KEY), 6)
    async with audit_pool.acquire() as conn:  # a superuser bypassing the triggers
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        await conn.execute(
            "UPDATE audit_events SET details = jsonb_set(details, '{size_bytes}', '1') WHERE seq = 4"
        )
        await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER ALL")
    done = keel_audit(_settings(audit_db), "verify")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "seq 4" in done.stdout and "seq 4" in done.stderr
    assert "edited" in done.stderr
    # The wrong key cannot vouch for the chain either.
    wrong = keel_audit(
        _settings(audit_db).model_copy(update={"audit_hmac_key": SecretStr("other")}), "verify"
    )
    assert wrong.returncode == 1 and "seq 1" in wrong.stdout


async def test_keel_audit_verify_fails_on_a_deleted_or_reordered_row(
    audit_pool: asyncpg.Pool, audit_db: str
) -> None:
    await _fill(AuditLog(audit_pool, hmac_key=KEY), 6)
    async with audit_pool.acquire() as conn:
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        # Swap the contents of rows 2 and 3 (keeping each row's own hash valid is impossible
        # without the key): swapping seq numbers reorders them.
        await _swap_seq(conn, 2, 3)
        await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER ALL")
    reordered = keel_audit(_settings(audit_db), "verify")
    assert reordered.returncode == 1
    assert "seq 2" in reordered.stdout

    async with audit_pool.acquire() as conn:
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        await _swap_seq(conn, 2, 3)
    restored = keel_audit(_settings(audit_db), "verify")
    assert restored.returncode == 0, restored.stdout + restored.stderr

    async with audit_pool.acquire() as conn:
        await conn.execute("DELETE FROM audit_events WHERE seq = 5")  # triggers still off
        await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER ALL")
    deleted = keel_audit(_settings(audit_db), "verify")
    assert deleted.returncode == 1
    assert "seq 5" in deleted.stdout and "missing" in deleted.stderr


async def test_keel_audit_export_writes_json_lines_and_is_itself_audited(
    audit_pool: asyncpg.Pool, audit_db: str
) -> None:
    audit = AuditLog(audit_pool, hmac_key=KEY)
    await _fill(audit, 6)
    await audit.record(AuditEntry(event=AuditEvent.DOCUMENT_SHARED, user_id="user-1", resource_id="doc-1"))
    done = keel_audit(_settings(audit_db), "export", "--user", "user-1", "--event", "document.uploaded")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["resource_id"] for line in lines] == ["doc-1", "doc-4"]
    assert {line["event"] for line in lines} == {"document.uploaded"}
    assert all(set(line) >= {"seq", "hash", "prev_hash", "occurred_at", "user_id"} for line in lines)

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert keel_audit(_settings(audit_db), "export", "--since", future).stdout == ""
    bad = keel_audit(_settings(audit_db), "export", "--event", "no.such.event")
    assert bad.returncode == 2 and "unknown event" in bad.stderr

    exported = await audit_pool.fetch(
        "SELECT details FROM audit_events WHERE event = 'audit.exported' ORDER BY seq"
    )
    assert len(exported) == 2  # the refused command exported nothing
    assert exported[0]["details"]["rows"] == 2 and exported[0]["details"]["via"] == "cli"
    assert keel_audit(_settings(audit_db), "verify").returncode == 0


async def test_each_record_writes_one_log_line_with_trace_user_and_session(audit_pool: asyncpg.Pool) -> None:
    audit = AuditLog(audit_pool, hmac_key=KEY)
    entry = AuditEntry(
        event=AuditEvent.SESSION_STARTED, user_id="log-user", session_id="sess-1", dedupe_key="log-1"
    )
    structlog.contextvars.bind_contextvars(trace_id="a" * 32, request_id="req-12345678")
    try:
        with structlog.testing.capture_logs() as logs:
            await audit.record(entry)
            await audit.record(entry)  # deduplicated: no second row, no second line
    finally:
        structlog.contextvars.unbind_contextvars("trace_id", "request_id")
    lines = [line for line in logs if line["event"] == "audit"]
    assert len(lines) == 1
    expected = {
        "audit_event": "session.started",
        "user_id": "log-user",
        "session_id": "sess-1",
        "trace_id": "a" * 32,
        "request_id": "req-12345678",
        "outcome": "success",
    }
    assert {key: lines[0].get(key) for key in expected} == expected
    row = await audit_pool.fetchrow(
        "SELECT trace_id, request_id FROM audit_events WHERE dedupe_key = 'log-1'"
    )
    assert dict(row) == {"trace_id": "a" * 32, "request_id": "req-12345678"}


async def test_the_log_stream_gets_json_lines_on_the_keel_audit_logger(
    audit_pool: asyncpg.Pool, audit_db: str
) -> None:
    await _fill(AuditLog(audit_pool, hmac_key=KEY), 1)
    settings = _settings(audit_db)
    done = keel_audit_json(settings, "export")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [line] = [r for r in records if r.get("logger") == "keel.audit"]
    assert line["event"] == "audit" and line["audit_event"] == "audit.exported"
    assert line["user_id"].startswith("cli:") and "audit_seq" in line


async def test_keel_audit_verify_fails_on_a_row_forged_past_the_head_or_a_cut_tail(
    audit_pool: asyncpg.Pool, audit_db: str
) -> None:
    await _fill(AuditLog(audit_pool, hmac_key=KEY), 3)
    async with audit_pool.acquire() as conn:
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        await conn.execute(
            "INSERT INTO audit_events (seq, id, occurred_at, event, outcome, prev_hash, hash)"
            " SELECT 4, 'forged', now(), 'auth.login', 'success', hash, repeat('f', 64)"
            " FROM audit_events WHERE seq = 3"
        )
    forged = keel_audit(_settings(audit_db), "verify")
    assert forged.returncode == 1 and "seq 4" in forged.stdout

    async with audit_pool.acquire() as conn:
        await conn.execute("DELETE FROM audit_events WHERE seq >= 3")  # triggers still off
        await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER ALL")
    cut = keel_audit(_settings(audit_db), "verify")
    assert cut.returncode == 1 and "seq 3" in cut.stdout


async def test_verify_while_events_are_being_appended(audit_pool: asyncpg.Pool) -> None:
    """Rows appended during a walk lie beyond the head it read: not a broken chain."""
    audit = AuditLog(audit_pool, hmac_key=KEY)
    await _fill(audit, 50)

    async def append_more() -> None:
        for i in range(50):
            await audit.record(AuditEntry(event=AuditEvent.LOGIN, user_id=f"late-{i}"))

    walks = [verify_chain(audit_pool, hmac_key=KEY) for _ in range(5)]
    _, *results = await asyncio.gather(append_more(), *walks)
    assert all(r is not None and r.ok for r in results), results

    final = await verify_chain(audit_pool, hmac_key=KEY)
    assert final.ok and final.rows == 100
