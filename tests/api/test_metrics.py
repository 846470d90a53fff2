"""/metrics: at exactly that path, behind KEEL_METRICS_TOKEN when set, and on its own
port (not the API's) when KEEL_METRICS_PORT is set."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from infra.settings import Settings
from tests.conftest import RunningApi, free_port, running_api
from workers.api_server import serving_api

TOKEN = "scrape-token-3f9c1e2b7a"


def _assert_refused(resp: httpx.Response, code: str) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["request_id"] == resp.headers["x-request-id"]
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "keel_" not in resp.text and "# HELP" not in resp.text


async def test_metrics_are_served_at_exactly_metrics_without_a_token_in_development(api: RunningApi) -> None:
    resp = await api.http.get("/metrics", follow_redirects=False)
    assert resp.status_code == 200, resp.status_code
    assert resp.headers["content-type"].startswith("text/plain")
    assert "# HELP" in resp.text


async def test_the_metrics_token_is_required_when_set(settings: Settings) -> None:
    async with running_api(settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})) as api:
        get = api.http.get
        _assert_refused(await get("/metrics"), "unauthenticated")
        _assert_refused(await get("/metrics", headers={"Authorization": "Basic abc"}), "unauthenticated")
        _assert_refused(await get("/metrics", headers={"Authorization": "Bearer"}), "unauthenticated")
        _assert_refused(await get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}), "invalid_token")
        _assert_refused(
            await get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}), "invalid_token"
        )
        # An API credential is not the metrics token.
        _assert_refused(await get("/metrics", headers=await api.auth("metrics-user")), "invalid_token")
        resp = await get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200 and "# HELP" in resp.text


async def test_keel_api_serves_metrics_on_their_own_port_only(settings: Settings) -> None:
    metrics_port = free_port()
    configured = settings.model_copy(update={"metrics_port": metrics_port, "metrics_token": SecretStr(TOKEN)})
    async with serving_api(configured), httpx.AsyncClient(timeout=30) as http:
        api_port = f"http://127.0.0.1:{configured.api_port}"
        on_api = await http.get(f"{api_port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert on_api.status_code == 404 and on_api.json()["error"]["code"] == "route_not_found"
        assert (await http.get(f"{api_port}/health/live")).status_code == 200
        own = f"http://127.0.0.1:{metrics_port}"
        _assert_refused(await http.get(f"{own}/metrics"), "unauthenticated")
        scraped = await http.get(f"{own}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200 and "# HELP" in scraped.text
        other = await http.get(f"{own}/api/v1/sessions")
        assert other.status_code == 404 and other.json()["error"]["code"] == "route_not_found"
