"""Request metrics of the API: rate, latency and errors by route and status.

* ``keel_http_requests_total{method, route, status}``
* ``keel_http_request_duration_seconds{method, route}`` (histogram, until the last byte:
  for ``/chat/stream`` and event replays that is the whole turn, so dashboards and the
  p95 alert leave routes ending in ``/stream`` or ``/events`` out)

``route`` is the route's template (``/api/v1/sessions/{session_id}``), never the raw
path, so ids do not blow up the label set; a path no route matches is ``unmatched``.
``/metrics`` and the health probes are not counted (scrapes and probes would drown the
traffic they measure).
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "keel_http_requests_total", "HTTP requests answered by the API", ["method", "route", "status"]
)
LATENCY = Histogram(
    "keel_http_request_duration_seconds",
    "Time from a request's arrival to its response's last byte",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0),
)
_UNCOUNTED: Final = ("/metrics", "/health/")


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(_UNCOUNTED):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started is a 500 to the client

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            method, route = str(scope.get("method", "GET")), _route_of(scope)
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
