"""The API's request metrics (by route template and status, refusals included) and the
business gauges it reads from Postgres."""

from __future__ import annotations

import re
import uuid

import asyncpg
import pytest
from prometheus_client import REGISTRY

from api.business_metrics import refresh_business_metrics
from infra.settings import Settings
from tests.conftest import RunningApi


def _count(method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "keel_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


def _observed(method: str, route: str) -> float:
    value = REGISTRY.get_sample_value(
        "keel_http_request_duration_seconds_count", {"method": method, "route": route}
    )
    return value or 0.0


async def test_requests_are_counted_by_route_template_and_status(api: RunningApi) -> None:
    route = "/api/v1/sessions/{session_id}"
    headers = await api.auth(f"metrics-{uuid.uuid4().hex[:8]}")
    before = (_count("GET", route, "404"), _count("GET", route, "401"), _observed("GET", route))
    unmatched_before = _count("GET", "unmatched", "404")
    for _ in range(3):  # three different ids: one label set, not three
        resp = await api.http.get(f"/api/v1/sessions/{uuid.uuid4().hex}", headers=headers)
        assert resp.status_code == 404
    assert (await api.http.get(f"/api/v1/sessions/{uuid.uuid4().hex}")).status_code == 401
    assert (await api.http.get("/no/such/path")).status_code == 404
    assert _count("GET", route, "404") == before[0] + 3
    assert _count("GET", route, "401") == before[1] + 1
    assert _observed("GET", route) == before[2] + 4
    assert _count("GET", "unmatched", "404") == unmatched_before + 1
    # Probes and scrapes are not traffic.
    probes = _count("GET", "/health/live", "200")
    await api.http.get("/health/live")
    await api.http.get("/metrics")
    assert _count("GET", "/health/live", "200") == probes
    scraped = (await api.http.get("/metrics")).text
    assert (
        'keel_http_requests_total{method="GET",route="/api/v1/sessions/{session_id}",status="404"}' in scraped
    )
    assert "/no/such/path" not in scraped
    assert not re.search(r'route="/api/v1/sessions/[0-9a-f]{32}"', scraped)  # no raw ids as labels


@pytest.mark.usefixtures("api")  # the migrations are applied
async def test_business_gauges_count_failed_operations_and_documents(settings: Settings) -> None:
    pool = await asyncpg.create_pool(str(settings.database_url), min_size=1, max_size=2)
    assert pool is not None
    op_id = f"op-{uuid.uuid4().hex}"
    try:
        await refresh_business_metrics(pool)
        before = REGISTRY.get_sample_value("keel_failed_operations", {"status": "open"}) or 0.0
        await pool.execute(
            "INSERT INTO failed_operations (id, kind, resource_id, workflow_id, error_code, error_message)"
            " VALUES ($1, 'ingest', $2, $3, 'document_corrupt', 'test row')",
            op_id,
            f"doc-{op_id}",
            f"ingest-{op_id}",
        )
        await refresh_business_metrics(pool)
        assert REGISTRY.get_sample_value("keel_failed_operations", {"status": "open"}) == before + 1
        for status in ("processing", "ready", "failed", "deleting"):
            assert REGISTRY.get_sample_value("keel_documents", {"status": status}) is not None
        assert REGISTRY.get_sample_value("keel_users_active", {"window": "1d"}) is not None
    finally:
        await pool.execute("DELETE FROM failed_operations WHERE id = $1", op_id)
        await pool.close()
