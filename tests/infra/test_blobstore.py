"""The filesystem blob store: streamed writes hash as they go and leave nothing when refused."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infra.blobstore import FilesystemBlobStore


async def _chunks(parts: list[bytes], *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for n, part in enumerate(parts):
        if fail_after is not None and n == fail_after:
            raise ValueError("refused mid-stream")
        yield part


async def test_put_stream_hashes_and_sizes_what_it_writes(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    parts = [b"a" * 1000, b"b" * 10, b"", b"c" * 4096]
    stored = await store.put_stream("documents/doc-1", _chunks(parts))
    data = b"".join(parts)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == len(data)
    assert await store.get("documents/doc-1") == data
    assert stored.sha256 == await store.put("documents/doc-2", data)


async def test_a_refused_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(ValueError, match="refused"):
        await store.put_stream("documents/doc-x", _chunks([b"x" * 100] * 5, fail_after=3))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
