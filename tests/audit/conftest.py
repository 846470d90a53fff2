"""Fixtures for the audit trail tests: a database of their own (so tampering and
retention never touch the shared one) and a task queue of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.db.pool import create_pool
from infra.settings import Settings
from tests.conftest import fresh_database


@pytest.fixture
async def audit_db(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh, migrated database for one test (dropped afterwards)."""
    async with fresh_database(service_urls[0], "keel_audit") as url:
        yield url


@pytest.fixture
async def audit_pool(audit_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(audit_db, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def audit_settings(settings: Settings, audit_db: str) -> Settings:
    """The test's settings on the fresh database and an audit task queue of its own."""
    return settings.model_copy(
        update={"database_url": audit_db, "audit_task_queue": f"keel-audit-test-{uuid.uuid4().hex[:8]}"}
    )


def keel_audit(settings: Settings, *args: str, log_json: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real ``keel audit …`` command in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        {
            "KEEL_ENV": "test",
            "KEEL_DATABASE_URL": str(settings.database_url),
            "KEEL_SECRET_KEY": settings.secret_key.get_secret_value(),
            "KEEL_LOG_JSON": "true" if log_json else "false",
        }
    )
    if settings.audit_hmac_key is not None:
        env["KEEL_AUDIT_HMAC_KEY"] = settings.audit_hmac_key.get_secret_value()
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def keel_audit_json(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``keel audit …`` with JSON logs (on stderr)."""
    return keel_audit(settings, *args, log_json=True)
