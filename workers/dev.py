"""``keel dev``: the whole platform on one machine, as separate processes like production.

Binds the API port first (a port that is taken is one line and exit code 1, before
anything starts), starts the embedded engines whose addresses are not configured
(Temporal dev server with its Web UI, Postgres, Redis; see infra/devstack.py) and
applies the migrations. Then it runs ``keel worker`` as a child process, with the
resolved addresses in its environment, restarting it with backoff when it dies
(``worker exited with code N; restarting``), and serves the API in this process.
The worker owns the embedding model and the embedded vector index; the API asks it
for knowledge queries (docs/architecture.md), so this process never loads torch.
Ctrl-C (or SIGTERM) stops the API, then the worker, then the engines; data stays in
``KEEL_DATA_DIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import structlog

from infra.db.migrate import apply_migrations
from infra.devstack import DevStack, DevStackError
from infra.settings import Settings
from infra.temporal_client import connect_temporal
from infra.temporal_setup import setup_temporal
from workers.api_app import build_api
from workers.api_server import PortInUse, bind_socket, serving

log = structlog.get_logger(__name__)

_WORKER_STOP_TIMEOUT_S: Final = 30.0
_RESTART_BACKOFF_S: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
_HEALTHY_RUN_S: Final = 60.0  # a worker that ran this long starts the backoff afresh
_PR_SET_PDEATHSIG: Final = 1


def _without_password(url: str | None) -> str:
    """A service URL fit for the terminal: any password is replaced by ``***``."""
    if not url:
        return "-"
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _banner(settings: Settings, *, temporal_ui: str | None, worker_pid: int | None) -> str:
    lines = [
        "",
        "Keel is running:",
        f"  API        http://{settings.api_host}:{settings.api_port}/api/v1  (docs: /docs)",
        f"  Worker     pid {worker_pid or '-'}  (`keel worker`; restarted if it dies)",
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


def worker_environment(resolved: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (this process's environment, where the other settings came from) with the
    addresses the dev stack resolved, so ``keel worker`` builds the same settings."""
    env = dict(base)
    env["KEEL_DATA_DIR"] = str(resolved.data_dir.expanduser().resolve())
    env["KEEL_TEMPORAL_ADDRESS"] = resolved.resolved_temporal_address
    if resolved.database_url:
        env["KEEL_DATABASE_URL"] = resolved.database_url
    if resolved.redis_url:
        env["KEEL_REDIS_URL"] = resolved.redis_url
    return env


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child if ``keel dev`` dies without
    stopping it (resolved here: the child only calls the C function)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    prctl = ctypes.CDLL(name, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class WorkerSupervisor:
    """Runs ``keel worker`` as a child process and restarts it, with backoff, when it dies."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._command = [sys.executable, "-m", "workers.cli", "worker"]
        self._env = dict(env)
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._started = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> int:
        """Spawn the worker and keep it running; returns its pid."""
        self._task = asyncio.create_task(self._supervise())
        await self._started.wait()
        assert self._proc is not None
        return self._proc.pid

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self._command,
            env=self._env,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches keel dev, which stops the worker in order
            preexec_fn=_die_with_parent(),
        )

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            began = time.monotonic()
            self._proc = proc = await self._spawn()
            if self._started.is_set():
                sys.stderr.write(f"keel dev: worker restarted (pid {proc.pid})\n")
                sys.stderr.flush()
            self._started.set()
            code = await proc.wait()
            if self._stopping:
                return
            failures = 1 if time.monotonic() - began >= _HEALTHY_RUN_S else failures + 1
            delay = _RESTART_BACKOFF_S[min(failures, len(_RESTART_BACKOFF_S)) - 1]
            sys.stderr.write(f"keel dev: worker exited with code {code}; restarting in {delay:.0f} s\n")
            sys.stderr.flush()
            log.warning("dev.worker_exited", code=code, restart_in_s=delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop supervising and stop the worker (SIGTERM: graceful; SIGKILL after 30 s)."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), _WORKER_STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("dev.worker_kill", pid=proc.pid, after_s=_WORKER_STOP_TIMEOUT_S)
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def run_dev(settings: Settings) -> None:
    try:
        api_sock = bind_socket(settings.api_host, settings.api_port)
    except PortInUse as err:
        sys.stderr.write(f"keel dev: {err}\n")
        raise SystemExit(1) from err
    # SIGINT/SIGTERM from here on: while starting, cancel the start (whatever started is
    # stopped below); once serving, leave the wait and stop in order.
    stop = asyncio.Event()
    starting = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        if starting is not None and not serving_now:
            starting.cancel()

    serving_now = False
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    stack = DevStack(settings)
    worker: WorkerSupervisor | None = None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            resolved = await stack.start()
        except DevStackError as err:
            sys.stderr.write(f"keel dev: {err}\n")
            raise SystemExit(1) from err
        assert resolved.database_url is not None
        await apply_migrations(resolved.database_url)
        client = await connect_temporal(resolved)
        await setup_temporal(
            client, resolved.temporal_namespace, retention_days=resolved.temporal_namespace_retention_days
        )
        worker = WorkerSupervisor(worker_environment(resolved, os.environ))
        worker_pid = await worker.start()
        async with serving(build_api(resolved), api_sock):
            serving_now = True
            ui = (
                f"http://127.0.0.1:{resolved.temporal_ui_port}" if settings.temporal_address is None else None
            )
            sys.stdout.write(_banner(resolved, temporal_ui=ui, worker_pid=worker_pid))
            sys.stdout.flush()
            await stop.wait()
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        sys.stderr.write("keel dev: stopped while starting\n")
        raise SystemExit(1) from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        api_sock.close()
        if worker is not None:
            await worker.stop()
        await stack.stop()
        sys.stdout.write("Keel stopped.\n")
