"""Liveness, readiness (Temporal, Postgres, Redis) and startup probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import ResourcesDep
from api.schemas import HealthStatus

router = APIRouter(prefix="/health", tags=["health"])

_CHECK_TIMEOUT_S = 2.0


@router.get("/live", operation_id="health_live", response_model=HealthStatus)
async def live() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get("/startup", operation_id="health_startup", response_model=HealthStatus)
async def startup(request: Request) -> JSONResponse:
    started = getattr(request.app.state, "resources", None) is not None
    body = HealthStatus(status="ok" if started else "starting")
    if started:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "2"})


async def _check(name: str, probe: asyncio.Future[object] | object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, timeout=_CHECK_TIMEOUT_S)  # type: ignore[arg-type]
    except Exception as exc:
        return name, f"unavailable: {type(exc).__name__}"
    return name, "ok"


@router.get("/ready", operation_id="health_ready", response_model=HealthStatus)
async def ready(resources: ResourcesDep) -> JSONResponse:
    results = await asyncio.gather(
        _check("temporal", resources.temporal.service_client.check_health()),
        _check("postgres", resources.pool.fetchval("SELECT 1")),
        _check("redis", resources.redis.ping()),
    )
    checks = dict(results)
    ok = all(v == "ok" for v in checks.values())
    body = HealthStatus(status="ok" if ok else "unavailable", checks=checks)
    headers = {} if ok else {"Retry-After": "5"}
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503, headers=headers)
