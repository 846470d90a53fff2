"""Upload bodies are bounded before FastAPI spools them.

FastAPI parses a multipart body (every file spooled to a temporary file) before
any dependency or route runs, so the size limit of an upload is enforced here,
at the ASGI level: a declared ``Content-Length`` over the limit is answered
``413 file_too_large`` without reading the body, and a body that grows past the
limit while it streams (chunked, or a ``Content-Length`` that lies) is answered
the same as soon as it crosses it. Single uploads may carry
``KEEL_INGEST_MAX_FILE_BYTES``, batches ``KEEL_INGEST_MAX_BATCH_BYTES``, each
plus room for the multipart framing.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import ErrorCode
from infra.settings import Settings

_UPLOAD_PATH = re.compile(r"^/api/v1/knowledge-bases/[^/]+/(documents|ingestions)$")
#: Multipart boundaries and part headers on top of the files themselves.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: What is read and dropped after a refusal, at most (and for at most ``_DRAIN_S``).
DRAIN_BYTES = 64 * 1024 * 1024
_DRAIN_S = 5.0


class _BodyTooLarge(Exception):
    pass


def upload_body_limit(settings: Settings, path: str) -> int | None:
    """The most bytes a POST to ``path`` may send, or None when it is not an upload."""
    match = _UPLOAD_PATH.match(path)
    if match is None:
        return None
    files = (
        settings.ingest_max_file_bytes if match.group(1) == "documents" else settings.ingest_max_batch_bytes
    )
    return files + MULTIPART_OVERHEAD_BYTES


class UploadSizeLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings: Settings | None = getattr(getattr(scope.get("app"), "state", None), "settings", None)
        limit = (
            upload_body_limit(settings, scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" and settings is not None
            else None
        )
        if limit is None:
            await self.app(scope, receive, send)
            return
        request_id = str(scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            if declared <= DRAIN_BYTES:
                await _drain(receive)
            await _refuse(send, request_id, limit)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    if message.get("more_body", False):
                        await _drain(receive)
                    await _refuse(send, request_id, limit)
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once the 413 is out, whatever the app answers is dropped
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of the body, within ``DRAIN_BYTES`` and ``_DRAIN_S``."""

    async def drop() -> None:
        dropped = 0
        while dropped <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    try:
        await asyncio.wait_for(drop(), timeout=_DRAIN_S)
    except TimeoutError:
        return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, request_id: str, limit: int) -> None:
    message = f"the upload is larger than the {limit} byte limit"
    body = json.dumps(
        {"error": {"code": ErrorCode.FILE_TOO_LARGE.value, "message": message, "request_id": request_id}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"x-request-id", request_id.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
