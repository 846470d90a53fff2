"""The global concurrency guard: at most ``KEEL_MAX_CONCURRENT_REQUESTS`` requests
in flight across all API replicas (a leased semaphore in Redis, see
:mod:`infra.rate_limit`); beyond that, 503 ``overloaded`` with ``Retry-After``.

A request holds its slot until its response has been sent completely, streams
included. Health probes, metrics and the OpenAPI document are never shed.
"""

from __future__ import annotations

import json
import uuid

from starlette.types import ASGIApp, Receive, Scope, Send

from api.state import ApiResources
from core.errors import ErrorCode

_EXEMPT_PREFIXES = ("/health/", "/metrics", "/openapi.json", "/docs", "/redoc")


class ConcurrencyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = getattr(scope.get("app"), "state", None)
        resources: ApiResources | None = getattr(state, "resources", None)
        if scope["type"] != "http" or resources is None or scope["path"].startswith(_EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        request_id = str(scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
        slot = f"{request_id}:{uuid.uuid4().hex[:8]}"
        decision = await resources.concurrency.acquire(slot)
        if not decision.allowed:
            await _refuse(send, request_id, decision.retry_after_s, checked=decision.checked)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if decision.checked:
                await resources.concurrency.release(slot)


async def _refuse(send: Send, request_id: str, retry_after_s: int, *, checked: bool) -> None:
    code, message = (
        (ErrorCode.OVERLOADED, "the service is at capacity; retry shortly")
        if checked
        else (ErrorCode.UPSTREAM_UNAVAILABLE, "load shedding is unavailable and this deployment fails closed")
    )
    body = json.dumps({"error": {"code": code.value, "message": message, "request_id": request_id}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
                (b"x-request-id", request_id.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
