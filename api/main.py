"""The FastAPI front door: ``create_app(settings)``.

Pools and the Temporal client open in the lifespan. Routes authorise, then
start/update/signal/query workflows or read Postgres/Redis; they never call the
LLM themselves. OpenAPI is generated at ``/openapi.json``; ``/docs`` and ``/redoc``
render it with assets the API serves itself (``api.docs_pages``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from api.business_metrics import refreshing_business_metrics
from api.docs_pages import add_docs_routes
from api.errors import install_error_handlers
from api.load_shedding import ConcurrencyLimitMiddleware
from api.metrics import add_metrics_route
from api.middleware import RequestIdMiddleware
from api.request_metrics import RequestMetricsMiddleware
from api.routes import admin, agents, api_keys, auth, chat, health, openai_compat, sessions, tools
from api.routes import audit as audit_routes
from api.routes import knowledge as knowledge_routes
from api.routes import uploads as upload_routes
from api.routes import usage as usage_routes
from api.schemas import ERROR_RESPONSES, document_refusals
from api.state import ApiKnowledge, ApiResources
from api.text_guard import TextGuardMiddleware
from api.upload_limits import UploadSizeLimitMiddleware
from api.web import SecurityHeadersMiddleware, add_web_routes
from infra.agents import AgentRegistry
from infra.auth.oidc import OidcVerifier, oidc_http_client
from infra.blobstore import FilesystemBlobStore
from infra.db.migrate import apply_migrations
from infra.db.pool import create_pool
from infra.redis_client import create_redis
from infra.settings import Settings
from infra.temporal_client import connect_temporal
from infra.tracing import tracing_enabled

log = structlog.get_logger(__name__)


def _required(value: str | None, name: str) -> str:
    if not value:
        raise RuntimeError(f"{name} is not set (`keel dev` sets it for the embedded stack)")
    return value


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    database_url = _required(settings.database_url, "KEEL_DATABASE_URL")
    redis_url = _required(settings.redis_url, "KEEL_REDIS_URL")
    await apply_migrations(database_url)
    pool = await create_pool(database_url)
    redis = create_redis(redis_url)
    oidc: OidcVerifier | None = None
    if settings.oidc_enabled:
        oidc = OidcVerifier(settings, http=oidc_http_client(settings), redis=redis)
    try:
        temporal = await connect_temporal(settings)
        app.state.resources = ApiResources(
            settings=settings,
            temporal=temporal,
            pool=pool,
            redis=redis,
            knowledge=ApiKnowledge(blobs=FilesystemBlobStore(settings.resolved_blob_path)),
            agents=AgentRegistry.load(settings.agents_path),
            oidc=oidc,
        )
        log.info("api.started", temporal=settings.resolved_temporal_address)
        async with refreshing_business_metrics(pool, settings.metrics_refresh_s):
            yield
    finally:
        app.state.resources = None
        if oidc is not None:
            await oidc.aclose()
        await redis.aclose()
        await pool.close()


class _KeelApi(FastAPI):
    _documented: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the refusals every operation can answer (403, 405, 422)."""
        document = super().openapi()
        if document is not self._documented:
            document_refusals(document)
            self._documented = document
        return document


def create_app(settings: Settings) -> FastAPI:
    """The API of ``settings``. It holds no embedding model and no vector index: the
    query route searches in the worker (docs/architecture.md)."""
    app = _KeelApi(
        title="Keel API",
        version="0.1.0",
        description="Self-hosted enterprise AI platform: durable agents on Temporal.",
        lifespan=_lifespan,
        docs_url=None,  # served by add_docs_routes, assets included (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.resources = None
    install_error_handlers(app)
    # Added last = outermost: request metrics, security headers, request id, the text guard, the
    # upload size limit (refuses oversized uploads before they take a slot), then load shedding.
    app.add_middleware(ConcurrencyLimitMiddleware)
    app.add_middleware(UploadSizeLimitMiddleware)
    app.add_middleware(TextGuardMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)  # CSP on everything but /docs and /redoc
    app.add_middleware(RequestMetricsMiddleware)  # outermost: counts refusals of the others too
    app.include_router(health.router)
    add_docs_routes(app)
    add_web_routes(app)
    routers = (
        auth,
        api_keys,
        chat,
        sessions,
        knowledge_routes,
        upload_routes,
        admin,
        tools,
        agents,
        usage_routes,
        openai_compat,
    )
    for module in (*routers, audit_routes):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    if settings.metrics_port is None:  # else `keel api` serves them on their own port
        add_metrics_route(app, settings)
    if tracing_enabled():  # a server span per request (Slack's /slack/* too); docs/observability.md
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="/health/,/metrics$", exclude_spans=["receive", "send"]
        )
    return app
