"""A TCP proxy in front of the real API that breaks one connection mid-response: how a
client sees a network drop (a real reset on a real socket), without touching Keel."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from urllib.parse import urlsplit


class CuttingProxy:
    """Forwards every connection to ``upstream``; the first response that carries
    ``cut_after`` ``occurrences`` times is aborted right after the chunk that did."""

    def __init__(self, upstream: str, *, cut_after: bytes, occurrences: int = 1) -> None:
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._cut_after, self._occurrences = cut_after, occurrences
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""
        self.connections = 0
        self.cuts = 0

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        upward = asyncio.ensure_future(self._pump(reader, up_writer))
        self._tasks.add(upward)
        try:
            seen = b""
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
                seen = (seen + data)[-1_000_000:]
                if self.cuts == 0 and seen.count(self._cut_after) >= self._occurrences:
                    self.cuts += 1
                    writer.transport.abort()  # a reset, mid-body
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            upward.cancel()
            up_writer.close()
            writer.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
