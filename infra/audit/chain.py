"""The hash chain of the audit trail: canonical serialisation, HMAC, verification.

``hash(row) = HMAC-SHA256(key, canonical(row))`` where ``canonical`` is the JSON of
every column but ``hash`` (``prev_hash`` included, so each row commits to the one
before it), with sorted keys, no whitespace, times as UTC ISO-8601 with
microseconds and integral floats written as integers (``jsonb`` does not keep the
difference, and the hash must survive the round trip through Postgres).

:class:`ChainVerifier` walks rows and tombstones in ``seq`` order and reports the
first sequence number whose link does not hold: an edited row (its hash no longer
matches its content), a missing one (a gap with no tombstone), a reordered one,
or a chain head that does not point at the last row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first row."""

HASHED_FIELDS = (
    "seq",
    "id",
    "occurred_at",
    "event",
    "user_id",
    "session_id",
    "trace_id",
    "request_id",
    "outcome",
    "resource_type",
    "resource_id",
    "details",
    "dedupe_key",
    "prev_hash",
)


def _normal(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return str(value)


def normalise_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` as they will read back from ``jsonb``: JSON types only (anything else
    becomes its string), non-finite floats as strings, integral floats as integers,
    and no NUL characters (``jsonb`` refuses them)."""
    cleaned: dict[str, Any] = _without_nul(_normal(dict(details)))
    return cleaned


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit times must carry a time zone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: every field of :data:`HASHED_FIELDS`, canonically."""
    payload = {name: _normal(row.get(name)) for name in HASHED_FIELDS}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(row: Mapping[str, Any], *, key: bytes) -> str:
    return hmac.new(key, canonical(row), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    """Live rows whose hash and link were checked."""
    tombstones: int
    """Purged rows whose link was checked (their content is gone by design)."""
    last_seq: int
    bad_seq: int | None = None
    reason: str | None = None


class ChainVerifier:
    """Feed rows (``kind`` ``row`` or ``tombstone``) in ascending ``seq``, then :meth:`finish`.

    Stops at the first broken link: every later call is ignored.
    """

    def __init__(self, *, key: bytes) -> None:
        self._key = key
        self._expected_seq = 1
        self._prev_hash = GENESIS_HASH
        self._rows = 0
        self._tombstones = 0
        self._bad: tuple[int, str] | None = None

    @property
    def failed(self) -> bool:
        return self._bad is not None

    def _fail(self, seq: int, reason: str) -> None:
        if self._bad is None:
            self._bad = (seq, reason)

    def add(self, row: Mapping[str, Any], *, tombstone: bool = False) -> None:
        if self._bad is not None:
            return
        seq = int(row["seq"])
        if seq < self._expected_seq:
            self._fail(seq, "sequence number appears twice (row and tombstone, or reordered)")
            return
        if seq > self._expected_seq:
            self._fail(self._expected_seq, "row is missing (deleted without a retention tombstone)")
            return
        if row["prev_hash"] != self._prev_hash:
            self._fail(seq, "prev_hash does not match the previous row's hash (reordered or replaced)")
            return
        if tombstone:
            self._tombstones += 1
        else:
            if not hmac.compare_digest(row_hash(row, key=self._key), str(row["hash"])):
                self._fail(seq, "hash does not match the row's content (edited)")
                return
            self._rows += 1
        self._prev_hash = str(row["hash"])
        self._expected_seq = seq + 1

    def finish(self, *, head_seq: int, head_hash: str, beyond_head: int | None = None) -> VerifyResult:
        """Check the chain head points at the last row (catches a deleted tail) and that no
        row lies beyond it (``beyond_head``: the lowest such seq, read after the walk)."""
        last_seq = self._expected_seq - 1
        if self._bad is None and (head_seq != last_seq or head_hash != self._prev_hash):
            if head_seq > last_seq:
                self._fail(last_seq + 1, "row is missing (the chain head is further on)")
            else:
                self._fail(head_seq + 1, "row is not covered by the chain head")
        if self._bad is None and beyond_head is not None:
            self._fail(beyond_head, "row is not covered by the chain head (inserted around it)")
        if self._bad is not None:
            seq, reason = self._bad
            return VerifyResult(
                ok=False,
                rows=self._rows,
                tombstones=self._tombstones,
                last_seq=last_seq,
                bad_seq=seq,
                reason=reason,
            )
        return VerifyResult(ok=True, rows=self._rows, tombstones=self._tombstones, last_seq=last_seq)
