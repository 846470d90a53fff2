"""``GET /metrics``: Prometheus metrics, at exactly ``/metrics`` (no redirect).

With ``KEEL_METRICS_TOKEN`` set, a scrape needs ``Authorization: Bearer <token>``
(compared in constant time); anything else answers 401 with Keel's error body.
With ``KEEL_METRICS_PORT`` set, the API app does not serve them: ``keel api``
serves :func:`create_metrics_app` on that port instead.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from api.errors import error_response, install_error_handlers
from api.middleware import RequestIdMiddleware
from core.errors import ErrorCode
from infra.settings import Settings

METRICS_PATH = "/metrics"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="keel-metrics"'}


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def metrics_endpoint(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    expected = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    async def metrics(request: Request) -> Response:
        if expected is not None:
            sent = _bearer(request)
            if sent is None:
                return error_response(
                    request,
                    ErrorCode.UNAUTHENTICATED,
                    "send 'Authorization: Bearer <metrics token>'",
                    401,
                    _CHALLENGE,
                )
            if not hmac.compare_digest(sent.encode(), expected):
                return error_response(
                    request, ErrorCode.INVALID_TOKEN, "the metrics token is not valid", 401, _CHALLENGE
                )
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return metrics


def add_metrics_route(app: FastAPI, settings: Settings) -> None:
    app.add_route(METRICS_PATH, metrics_endpoint(settings), methods=["GET"], include_in_schema=False)


def create_metrics_app(settings: Settings) -> FastAPI:
    """Only ``/metrics``, for ``KEEL_METRICS_PORT``: no OpenAPI, no lifespan, Keel's error bodies."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    add_metrics_route(app, settings)
    return app
