"""Per-user rate limits (Redis sliding window), the global concurrency guard, and
what happens when Redis is unreachable (``KEEL_RATE_LIMIT_FAIL_MODE``)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from infra.devstack import _EmbeddedRedis
from infra.settings import Settings
from tests.conftest import RunningApi, free_port
from tests.conftest import running_api as _api

N = 20


async def _burst(api: RunningApi, headers: dict[str, str], count: int) -> list[httpx.Response]:
    return list(
        await asyncio.gather(*(api.http.get("/api/v1/sessions", headers=headers) for _ in range(count)))
    )


async def test_a_burst_of_3n_gets_exactly_n_through_and_others_are_unaffected(settings: Settings) -> None:
    async with _api(settings.model_copy(update={"rate_limit_per_minute": N})) as api:
        alice = await api.auth(f"burst-a-{uuid.uuid4().hex[:6]}")
        bob = await api.auth(f"burst-b-{uuid.uuid4().hex[:6]}")

        responses = await _burst(api, alice, 3 * N)
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) == {200, 429}, statuses
        assert abs(statuses[200] - N) <= N * 0.05, statuses
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 60

        # Another user's requests are unaffected, during alice's refusal window.
        bob_statuses = Counter(r.status_code for r in await _burst(api, bob, N))
        assert bob_statuses == Counter({200: N})
        assert (await api.http.get("/api/v1/sessions", headers=alice)).status_code == 429


async def test_a_constant_client_request_id_does_not_make_requests_free(settings: Settings) -> None:
    # The red-team bypass: the limiter keyed its window entries on the client's X-Request-ID,
    # so sending the same id on every request overwrote one entry and nothing was ever refused.
    async with _api(settings.model_copy(update={"rate_limit_per_minute": N})) as api:
        headers = {**await api.auth(f"rid-{uuid.uuid4().hex[:6]}"), "X-Request-ID": "constant-request-id"}
        statuses: Counter[int] = Counter()
        for _ in range(3):  # sequential bursts, like the attack (100/100 then 300/300 answered 200)
            responses = await _burst(api, headers, N)
            statuses.update(r.status_code for r in responses)
            # The client's id is still echoed: it is a correlation id, not a key.
            assert {r.headers["x-request-id"] for r in responses} == {"constant-request-id"}
        assert statuses[200] == N, statuses
        assert statuses[429] == 2 * N, statuses


async def test_the_concurrency_guard_sheds_load_with_503(settings: Settings) -> None:
    # A guard of size 2, both slots held by requests of other replicas.
    tight = settings.model_copy(update={"max_concurrent_requests": 2})
    async with _api(tight) as api:
        headers = await api.auth(f"guard-{uuid.uuid4().hex[:6]}")
        redis = aioredis.from_url(str(settings.redis_url))
        try:
            await redis.delete("keel:inflight")
            # Occupy both slots like two requests on other replicas would (leases expire on their own).
            await redis.zadd("keel:inflight", {"other-replica-1": 9e12, "other-replica-2": 9e12})
            resp = await api.http.get("/api/v1/sessions", headers=headers)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["code"] == "overloaded"
            assert resp.headers["retry-after"] == "1" and resp.headers["x-request-id"]
            # Health probes are never shed.
            assert (await api.http.get("/health/live")).status_code == 200
            await redis.zrem("keel:inflight", "other-replica-1")
            assert (await api.http.get("/api/v1/sessions", headers=headers)).status_code == 200
            # The slot was released after the response: the next request gets it again.
            assert (await api.http.get("/api/v1/sessions", headers=headers)).status_code == 200
            assert await redis.zcard("keel:inflight") == 1
        finally:
            await redis.delete("keel:inflight")
            await redis.aclose()


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_redis_unreachable_follows_the_fail_mode(
    settings: Settings, tmp_path: Path, fail_mode: str
) -> None:
    embedded = _EmbeddedRedis(tmp_path / "redis" / "rl.db")
    url = await embedded.start()
    mine = settings.model_copy(
        update={"redis_url": url, "rate_limit_fail_mode": fail_mode, "api_port": free_port()}
    )
    try:
        async with _api(mine) as api:
            headers = await api.auth(f"failmode-{uuid.uuid4().hex[:6]}")
            assert (await api.http.get("/api/v1/api-keys", headers=headers)).status_code == 200
            await embedded.stop()
            resp = await api.http.get("/api/v1/api-keys", headers=headers)
            if fail_mode == "open":
                assert resp.status_code == 200, resp.text
            else:
                assert resp.status_code == 503, resp.text
                assert resp.json()["error"]["code"] == "upstream_unavailable"
                assert int(resp.headers["retry-after"]) >= 1
    finally:
        await embedded.stop()
