"""Versioned SQL migrations: ``migrations/NNNN_name.sql`` applied in order, once.

An advisory lock serialises concurrent starters (API and worker booting at
once); applied versions are recorded in ``schema_migrations``.
"""

from __future__ import annotations

from importlib import resources

import asyncpg
import structlog

_LOCK_KEY = 0x6B65656C  # "keel"

log = structlog.get_logger(__name__)


def available_migrations() -> list[tuple[str, str]]:
    folder = resources.files("infra.db") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


async def apply_migrations(database_url: str) -> list[str]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    conn = await asyncpg.connect(database_url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in available_migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied_now.append(version)
                log.info("migration.applied", version=version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
