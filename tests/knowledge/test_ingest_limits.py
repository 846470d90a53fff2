"""Ingestion limits (issue 9): upload bodies refused by size before and while they are read,
documents in flight per user, chunks per document, a DOCX bomb through the whole pipeline,
and bounded request lists. Small limits here so the attacks stay cheap to reproduce."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from tests.conftest import RunningApi
from tests.ingest.test_parsing import bomb_docx
from tests.knowledge.test_documents_api import HANDBOOK, _kb_ids, upload, wait_settled
from tests.test_kb_cli import _folder, keel

pytestmark = pytest.mark.slow

FILE_LIMIT = 64 * 1024
IN_FLIGHT = 3
MAX_CHUNKS = 20


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "ingest_max_file_bytes": FILE_LIMIT,
            "ingest_max_batch_bytes": 3 * FILE_LIMIT,
            "ingest_max_in_flight_per_user": IN_FLIGHT,
            "ingest_max_chunks_per_document": MAX_CHUNKS,
            "ingest_max_docx_part_bytes": 1024 * 1024,
        }
    )


def _stored_blobs(settings: Settings) -> list[Path]:
    root = settings.resolved_blob_path
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["request_id"] == resp.headers["x-request-id"]


async def test_a_declared_oversized_upload_is_refused_before_its_body_is_read(api: RunningApi) -> None:
    """Content-Length says 10 GiB and only a few bytes follow: before the fix the server waited
    for (and spooled) the whole body; now it answers 413 at once."""
    headers = await api.auth("lim-declared")
    kb = (await _kb_ids(api, headers))["personal"]
    reader, writer = await asyncio.open_connection("127.0.0.1", api.settings.api_port)
    try:
        writer.write(
            (
                f"POST /api/v1/knowledge-bases/{kb}/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: {headers['Authorization']}\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\n"
                f"Content-Length: {10 * 1024**3}\r\n\r\n--xyz\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        assert status_line.split()[1] == "413", status_line
        fields = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        length = int(next(v for k, v in fields.items() if k.lower() == "content-length"))
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), timeout=30))
    finally:
        writer.close()
    assert body["error"]["code"] == "file_too_large" and body["error"]["request_id"]
    assert _stored_blobs(api.settings) == []


async def test_a_batch_over_the_batch_limit_is_refused_while_it_streams(api: RunningApi) -> None:
    """Each file is under the per-file limit; together they pass the batch limit. Sent chunked
    (no Content-Length), so only counting the body as it arrives can refuse it."""
    headers = await api.auth("lim-stream")
    kb = (await _kb_ids(api, headers))["personal"]
    boundary = "keel-limit-test"

    async def body() -> AsyncIterator[bytes]:
        for n in range(5):
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="f{n}.txt"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            for _ in range(FILE_LIMIT // 1024 - 1):
                yield b"w" * 1024
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    resp = await api.http.post(
        f"/api/v1/knowledge-bases/{kb}/ingestions",
        content=body(),
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    _assert_error(resp, 413, "file_too_large")
    listing = (await api.http.get(f"/api/v1/knowledge-bases/{kb}/documents", headers=headers)).json()
    assert listing["documents"] == []
    assert _stored_blobs(api.settings) == []


async def test_a_refused_batch_leaves_no_blobs(api: RunningApi) -> None:
    headers = await api.auth("lim-batch")
    kb = (await _kb_ids(api, headers))["personal"]
    files = [
        ("files", ("fine.txt", HANDBOOK.encode(), "text/plain")),
        ("files", ("huge.txt", b"x" * (FILE_LIMIT + 1), "text/plain")),
    ]
    resp = await api.http.post(f"/api/v1/knowledge-bases/{kb}/ingestions", files=files, headers=headers)
    _assert_error(resp, 413, "file_too_large")
    assert _stored_blobs(api.settings) == []


async def test_documents_in_flight_per_user_are_bounded(api: RunningApi) -> None:
    """No worker runs here, so every accepted document stays processing."""
    greedy = await api.auth("lim-greedy")
    kb = (await _kb_ids(api, greedy))["personal"]
    for n in range(IN_FLIGHT):  # different bytes: the same bytes again would be the same document
        await upload(api, greedy, kb, f"doc{n}.txt", f"{HANDBOOK}\n\nCopy {n}.".encode())
    refused = await api.http.post(
        f"/api/v1/knowledge-bases/{kb}/documents",
        files={"file": ("one-more.txt", f"{HANDBOOK}\n\nOne more.".encode(), "text/plain")},
        headers=greedy,
    )
    _assert_error(refused, 429, "ingest_busy")
    assert int(refused.headers["retry-after"]) > 0
    batch = await api.http.post(
        f"/api/v1/knowledge-bases/{kb}/ingestions",
        files=[("files", ("b.txt", HANDBOOK.encode(), "text/plain"))],
        headers=greedy,
    )
    _assert_error(batch, 429, "ingest_busy")
    listing = (await api.http.get(f"/api/v1/knowledge-bases/{kb}/documents", headers=greedy)).json()
    assert len(listing["documents"]) == IN_FLIGHT

    # Another user is not held up by the first one's backlog.
    other = await api.auth("lim-other")
    other_kb = (await _kb_ids(api, other))["personal"]
    await upload(api, other, other_kb, "mine.txt", HANDBOOK.encode())
    too_many = [("files", (f"f{n}.txt", b"words", "text/plain")) for n in range(IN_FLIGHT + 1)]
    batch_url = f"/api/v1/knowledge-bases/{other_kb}/ingestions"
    resp = await api.http.post(batch_url, files=too_many, headers=other)
    _assert_error(resp, 422, "invalid_request")


async def test_chunk_limit_and_docx_bomb_fail_their_documents(platform: RunningApi) -> None:
    owner = await platform.auth("lim-chunks")
    kb = (await _kb_ids(platform, owner))["personal"]
    paragraphs = "\n\n".join(f"Paragraph {n}. " + "lorem ipsum dolor sit amet " * 40 for n in range(40))
    assert len(paragraphs) < FILE_LIMIT
    many = await upload(platform, owner, kb, "many.txt", paragraphs.encode())
    bomb = await upload(
        platform,
        owner,
        kb,
        "bomb.docx",
        bomb_docx(2 * 1024 * 1024),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    fine = await upload(platform, owner, kb, "fine.txt", HANDBOOK.encode())

    failed = await wait_settled(platform, owner, kb, many)
    assert failed["status"] == "failed" and failed["error_code"] == "document_too_many_chunks", failed
    assert str(MAX_CHUNKS) in failed["error_message"]
    assert failed["chunk_count"] == 0
    exploded = await wait_settled(platform, owner, kb, bomb)
    assert exploded["status"] == "failed" and exploded["error_code"] == "document_too_complex", exploded
    assert (await wait_settled(platform, owner, kb, fine))["status"] == "ready"


async def test_kb_upload_waits_while_the_api_says_ingest_busy(platform: RunningApi, tmp_path: Path) -> None:
    """Four files in batches of two with at most three in flight: the second batch is refused
    with ingest_busy until the first is done; the command waits and sends it again."""
    root = _folder(tmp_path / "docs")
    token = await platform.token("lim-cli")
    status, out, err = await keel(
        "kb", "upload", str(root), "--api", platform.base_url, "--batch-size", "2", token=token
    )
    assert status == 1, (out, err)  # broken.pdf fails, as it should
    assert "ready:  3" in out and "failed: 1" in out and "Traceback" not in err, (out, err)


async def test_request_lists_are_bounded(api: RunningApi) -> None:
    """Before the fix a chat request's knowledge_base_ids (or a share's principals) reached
    Temporal unbounded: a 2.6 MB payload that failed workflow tasks."""
    headers = await api.auth("lim-lists")
    kb = (await _kb_ids(api, headers))["personal"]
    chat = "/api/v1/chat"
    too_many_kbs = {"message": "hi", "knowledge_base_ids": [f"kb-{n}" for n in range(51)]}
    _assert_error(await api.http.post(chat, json=too_many_kbs, headers=headers), 422, "invalid_request")
    long_id = {"message": "hi", "knowledge_base_ids": ["k" * 201]}
    _assert_error(await api.http.post(chat, json=long_id, headers=headers), 422, "invalid_request")

    shares = f"/api/v1/knowledge-bases/{kb}/documents/doc-none/shares"
    for body in (
        {"user_ids": [f"u{n}" for n in range(101)]},
        {"user_ids": [f"u{n}" for n in range(60)], "group_ids": [f"g{n}" for n in range(60)]},
        {"group_ids": ["g" * 201]},
    ):
        _assert_error(await api.http.post(shares, json=body, headers=headers), 422, "invalid_request")
    # Within the bounds the request gets as far as the document (which does not exist).
    ok = {"user_ids": [f"u{n}" for n in range(50)], "group_ids": [f"g{n}" for n in range(50)]}
    _assert_error(await api.http.post(shares, json=ok, headers=headers), 404, "document_not_found")

    long_group = {"user_id": "lim-token", "groups": ["g" * 257]}
    _assert_error(await api.http.post("/api/v1/auth/dev-token", json=long_group), 422, "invalid_request")
