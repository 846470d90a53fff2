"""``keel dev``: the whole platform on one machine, in one process.

Starts the embedded engines whose addresses are not configured (Temporal dev
server with its Web UI, Postgres, Redis; see infra/devstack.py), applies the
migrations, then runs the workers and the API in this process: the embedded
vector index belongs to one process, so the API's reads and the workers'
writes share it. Ctrl-C stops everything; data stays in ``KEEL_DATA_DIR``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Generator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import structlog
import uvicorn

from api.main import create_app
from infra.db.migrate import apply_migrations
from infra.devstack import DevStack, DevStackError
from infra.knowledge import open_knowledge
from infra.settings import Settings
from infra.temporal_client import connect_temporal
from infra.temporal_setup import ensure_search_attributes
from workers.runtime import running_workers

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (it re-raises the signal after
    shutdown); ``run_dev`` owns SIGINT/SIGTERM and stops everything in order."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _without_password(url: str | None) -> str:
    """A service URL fit for the terminal: any password is replaced by ``***``."""
    if not url:
        return "-"
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _banner(settings: Settings, *, temporal_ui: str | None) -> str:
    lines = [
        "",
        "Keel is running:",
        f"  API        http://{settings.api_host}:{settings.api_port}/api/v1  (docs: /docs)",
        f"  Temporal   {settings.resolved_temporal_address}",
    ]
    if temporal_ui:
        lines.append(f'  Temporal UI {temporal_ui}  (filter: KeelUserId = "<user id>")')
    lines.append(f"  Postgres   {_without_password(settings.database_url)}")
    lines.append(f"  Redis      {_without_password(settings.redis_url)}")
    lines.append(f"  Data       {settings.data_dir.resolve()}")
    lines.append(f"  LLM        {settings.llm_provider} {settings.llm_model_name or ''}".rstrip())
    lines.append("Press Ctrl-C to stop.\n")
    return "\n".join(lines)


async def run_dev(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    own_temporal = settings.temporal_address is None
    stack = DevStack(settings)
    try:
        resolved = await stack.start()
    except DevStackError as err:
        sys.stderr.write(f"keel dev: {err}\n")
        raise SystemExit(1) from err
    try:
        assert resolved.database_url is not None
        await apply_migrations(resolved.database_url)
        client = await connect_temporal(resolved)
        await ensure_search_attributes(client, resolved.temporal_namespace)
        async with open_knowledge(resolved) as knowledge, running_workers(client, resolved, knowledge):
            config = uvicorn.Config(
                create_app(resolved, knowledge=knowledge),
                host=resolved.api_host,
                port=resolved.api_port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=10,
            )
            server = _Server(config)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
            ui = f"http://127.0.0.1:{resolved.temporal_ui_port}" if own_temporal else None

            task = asyncio.ensure_future(server.serve())
            while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn exposes a flag
                await asyncio.sleep(0.05)
            if server.started:
                sys.stdout.write(_banner(resolved, temporal_ui=ui))
                sys.stdout.flush()
            await task  # returns once a signal set should_exit and the API drained
    finally:
        await stack.stop()
        sys.stdout.write("Keel stopped.\n")
