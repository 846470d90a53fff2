"""``keel dev``: the whole platform on one machine.

Starts the embedded engines whose addresses are not configured (Temporal dev
server with its Web UI, Postgres, Redis; see infra/devstack.py), applies the
migrations, then runs ``keel worker`` and ``keel api`` as child processes
with the resolved addresses. Ctrl-C stops everything; data stays in
``KEEL_DATA_DIR``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import structlog

from infra.db.migrate import apply_migrations
from infra.devstack import DevStack
from infra.settings import Settings

log = structlog.get_logger(__name__)


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["KEEL_DATA_DIR"] = str(settings.data_dir)
    env["KEEL_TEMPORAL_ADDRESS"] = settings.resolved_temporal_address
    if settings.database_url:
        env["KEEL_DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["KEEL_REDIS_URL"] = settings.redis_url
    return env


async def _spawn(role: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "workers.cli", role, env=env)


async def _stop(proc: asyncio.subprocess.Process, timeout_s: float = 15.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _banner(settings: Settings, *, temporal_ui: str | None) -> str:
    lines = [
        "",
        "Keel is running:",
        f"  API        http://{settings.api_host}:{settings.api_port}/api/v1  (docs: /docs)",
        f"  Temporal   {settings.resolved_temporal_address}",
    ]
    if temporal_ui:
        lines.append(f'  Temporal UI {temporal_ui}  (filter: KeelUserId = "<user id>")')
    lines.append(f"  Data       {settings.data_dir.resolve()}")
    lines.append(f"  LLM        {settings.llm_provider} {settings.llm_model_name or ''}".rstrip())
    lines.append("Press Ctrl-C to stop.\n")
    return "\n".join(lines)


async def run_dev(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    own_temporal = settings.temporal_address is None
    stack = DevStack(settings)
    resolved = await stack.start()
    children: list[asyncio.subprocess.Process] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        assert resolved.database_url is not None
        await apply_migrations(resolved.database_url)
        env = _child_env(resolved)
        children = [await _spawn("worker", env), await _spawn("api", env)]
        ui = f"http://127.0.0.1:{resolved.temporal_ui_port}" if own_temporal else None
        sys.stdout.write(_banner(resolved, temporal_ui=ui))
        sys.stdout.flush()
        waits = [asyncio.ensure_future(c.wait()) for c in children]
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        if stopper not in done:
            log.error("dev.child_exited", returncodes=[c.returncode for c in children])
        stopper.cancel()
    finally:
        for child in reversed(children):
            await _stop(child)
        await stack.stop()
        sys.stdout.write("Keel stopped.\n")
