"""API keys in Postgres (hashes only; see infra/auth/api_keys.py)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

_COLUMNS = (
    "id, user_id, name, prefix, scopes, email, groups, roles, expires_at, created_at, "
    "rotated_at, last_used_at, revoked_at"
)


class ApiKeyRecord(BaseModel):
    id: str
    user_id: str
    name: str
    prefix: str
    scopes: list[str]
    email: str | None
    groups: list[str]
    roles: list[str]
    expires_at: datetime
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def _record(row: asyncpg.Record) -> ApiKeyRecord:
    return ApiKeyRecord.model_validate(dict(row))


class ApiKeyRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(self, record: ApiKeyRecord, *, key_hash: str) -> None:
        await self._pool.execute(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scopes, email, groups, roles,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            record.id,
            record.user_id,
            record.name,
            record.prefix,
            key_hash,
            record.scopes,
            record.email,
            record.groups,
            record.roles,
            record.expires_at,
        )

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1",  # noqa: S608 (constant columns)
            key_hash,
        )
        return _record(row) if row else None

    async def mark_used(self, key_id: str) -> None:
        """At most one write a minute per key."""
        await self._pool.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1"
            " AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')",
            key_id,
        )

    async def list_for(self, user_id: str) -> list[ApiKeyRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC",  # noqa: S608
            user_id,
        )
        return [_record(r) for r in rows]

    async def get_for(self, user_id: str, key_id: str) -> ApiKeyRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1 AND user_id = $2",  # noqa: S608
            key_id,
            user_id,
        )
        return _record(row) if row else None

    async def rotate(
        self,
        user_id: str,
        key_id: str,
        *,
        key_hash: str,
        prefix: str,
        groups: list[str],
        roles: list[str],
    ) -> ApiKeyRecord | None:
        """A new secret for a live key (the old one stops working at once)."""
        row = await self._pool.fetchrow(
            f"UPDATE api_keys SET key_hash = $3, prefix = $4, groups = $5, roles = $6, rotated_at = now()"  # noqa: S608
            f" WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()"
            f" RETURNING {_COLUMNS}",
            key_id,
            user_id,
            key_hash,
            prefix,
            groups,
            roles,
        )
        return _record(row) if row else None

    async def revoke(self, user_id: str, key_id: str) -> bool:
        """True when a live key was revoked now (revoking twice answers False)."""
        status = await self._pool.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            key_id,
            user_id,
        )
        return str(status).endswith(" 1")
