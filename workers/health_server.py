"""A worker process's own HTTP port (``KEEL_WORKER_HEALTH_PORT``): probes and metrics.

* ``GET /health/live``: 200 while the process's event loop answers. It checks no
  dependency on purpose: a Temporal or Postgres outage must not make Kubernetes restart
  every worker (they reconnect by themselves).
* ``GET /health/ready``: 200 once every worker of the process polls its task queue, 503
  (with the reason) before that, while it drains on shutdown, and when a worker has
  stopped on a fatal error.
* ``GET /metrics``: this process's Prometheus registry (model, retrieval, tool, circuit
  and budget metrics are recorded where those calls run: here, not in the API), behind
  ``KEEL_METRICS_TOKEN`` when that is set, as on the API.

``keel slack`` (Socket Mode) serves the same three, ready once its connection is open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.errors import install_error_handlers
from api.metrics import add_metrics_route
from api.middleware import RequestIdMiddleware
from infra.settings import Settings
from workers.serving import bind_socket, serving

#: ``None`` when ready, else why not (one line).
Readiness = Callable[[], str | None]


def create_health_app(settings: Settings, readiness: Readiness) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    async def live(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        reason = readiness()
        if reason is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

    app.add_route("/health/live", live, methods=["GET"])
    app.add_route("/health/ready", ready, methods=["GET"])
    add_metrics_route(app, settings)
    return app


@asynccontextmanager
async def serving_health(settings: Settings, readiness: Readiness) -> AsyncIterator[int | None]:
    """The health port for the duration of the block (nothing when the port is unset);
    yields the bound port. A taken port fails at once (``PortInUse``), before any
    worker polls."""
    if settings.worker_health_port is None:
        yield None
        return
    sock = bind_socket(
        settings.worker_health_host, settings.worker_health_port, setting="KEEL_WORKER_HEALTH_PORT"
    )
    app = create_health_app(settings, readiness)
    async with serving(app, sock, lifespan="off", graceful_shutdown_s=2):
        yield int(sock.getsockname()[1])
