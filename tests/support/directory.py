"""The user directory's row for a user, read straight from Postgres (what was recorded)."""

from __future__ import annotations

from typing import Any

import asyncpg

from infra.settings import Settings


async def directory_row(settings: Settings, user_id: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        row = await conn.fetchrow("SELECT * FROM user_directory WHERE user_id = $1", user_id)
    finally:
        await conn.close()
    return dict(row) if row else None
