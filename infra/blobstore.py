"""Where uploaded bytes live: never in workflow payloads, only their key.

``FilesystemBlobStore`` (under the data dir) is the default; the ``BlobStore``
protocol is the port an S3 or Azure Blob store implements.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterable
from pathlib import Path
from typing import IO, NamedTuple, Protocol

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_.-]{0,255}$")


class StoredBlob(NamedTuple):
    sha256: str
    size_bytes: int


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes) -> str: ...
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Write ``chunks`` as they come (never all in memory); nothing is left if they raise."""
        ...

    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return self._root / key

    async def put(self, key: str, data: bytes) -> str:
        """Write atomically (temp file + rename); returns the sha256 of the bytes."""
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        await asyncio.to_thread(write)
        return hashlib.sha256(data).hexdigest()

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Stream to a temp file (sha256 computed on the way), then rename; an error
        raised by ``chunks`` (e.g. a size limit) removes the temp file and propagates."""
        path = self._path(key)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.part")
        digest = hashlib.sha256()
        size = 0

        def open_tmp() -> IO[bytes]:
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(tmp, "wb")  # closed below, also on error

        out = await asyncio.to_thread(open_tmp)
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(out.close)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            out.close()
            tmp.unlink(missing_ok=True)  # synchronous: this also runs on cancellation
            raise
        return StoredBlob(sha256=digest.hexdigest(), size_bytes=size)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)
