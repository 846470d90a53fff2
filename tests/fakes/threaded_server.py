"""The one base of the fake servers: a uvicorn server on a daemon thread.

Subclasses give the ASGI app (``_asgi_app``), optionally more uvicorn options
(``_uvicorn_options``: TLS, lifespan), a readiness probe (``_ready``) and what to do
before stopping (``_before_stop``). ``start()`` binds ``host:port`` (``port=0``: a free
port) and returns once the server answers; ``stop()`` asks it to exit, and cuts off
requests still running after ``stop_grace_s``; ``serve_forever()`` serves in the
calling thread (for a fake's ``__main__``).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, ClassVar, Self

import uvicorn
from starlette.types import ASGIApp


class ThreadedServer:
    #: the thread's name prefix and the name in error messages
    server_name: ClassVar[str] = "fake server"
    #: how long ``stop()`` lets running requests finish before cutting them off
    stop_grace_s: ClassVar[float] = 0.0

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self._host = host
        self._requested_port = port
        self._log_level = log_level
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- what a fake provides ----------------------------------------------- #
    def _asgi_app(self) -> ASGIApp:
        raise NotImplementedError

    def _uvicorn_options(self) -> dict[str, Any]:
        return {"lifespan": "off"}

    def _ready(self) -> bool:
        """Whether the started server answers (beyond uvicorn's ``started``)."""
        return True

    def _before_stop(self) -> None:
        """Release whatever the fake holds, so ``stop()`` does not wait on it."""

    # -- lifecycle ---------------------------------------------------------- #
    def _config(self, port: int) -> uvicorn.Config:
        return uvicorn.Config(
            self._asgi_app(),
            host=self._host,
            port=port,
            log_level=self._log_level,
            access_log=False,
            timeout_graceful_shutdown=1,
            **self._uvicorn_options(),
        )

    def start(self, timeout: float = 10.0) -> Self:
        """Serve from a daemon thread; returns once the server answers."""
        if self._thread is not None:
            raise RuntimeError(f"{self.server_name} is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._requested_port))
        self._port = int(sock.getsockname()[1])
        server = uvicorn.Server(self._config(self._port))
        name = f"{self.server_name.replace(' ', '-')}-{self._port}"
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and thread.is_alive():
            if server.started and self._ready():
                return self
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.server_name} did not come up on {self._host}:{self._port}")

    def stop(self, timeout: float = 10.0) -> None:
        self._before_stop()
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
            if self.stop_grace_s <= 0:
                server.force_exit = True
        if thread is not None:
            thread.join(min(timeout, self.stop_grace_s) if self.stop_grace_s > 0 else timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        self._server = self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._port = self._requested_port
        uvicorn.Server(self._config(self._requested_port)).run()

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- address ------------------------------------------------------------ #
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.server_name} is not started")
        return self._port
