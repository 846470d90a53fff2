"""The model's circuit breaker through the real platform: a failing model (the fake's 500s)
opens it, later turns fail fast with ``circuit_open`` and a clear message without calling
the model, and once the model is healthy and the open period is over a turn closes it."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client

from infra.circuit import Circuit, CircuitConfig
from infra.redis_client import create_redis
from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.openai_server import Error, FakeOpenAI

OPEN_S = 3.0


async def _turn(platform: RunningApi, headers: dict[str, str]) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    resp = await platform.http.post("/api/v1/chat", json={"message": "hi"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json(), time.monotonic() - started


async def test_an_open_model_circuit_fails_turns_fast_and_recovers(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    tight = settings.model_copy(
        update={"circuit_llm_failures": 5, "circuit_llm_window_s": 60.0, "circuit_llm_open_s": OPEN_S}
    )
    redis = create_redis(settings.redis_url or "")
    circuit = Circuit(
        "llm:fake-model", CircuitConfig(), redis=redis, namespace=settings.circuit_namespace
    )  # as a third worker sees it
    try:
        async with running_platform(tight, temporal_client) as platform:
            headers = await platform.auth("circuit-user")
            llm.set_default(Error(status=500, message="down"))

            # 3 attempts, 3 failures: not yet 5, so the model's own error.
            first, first_s = await _turn(platform, headers)
            assert first["status"] == "failed"
            assert first["error"] == {"code": "upstream_unavailable", "message": "the model is unavailable"}
            assert llm.request_count == 3 and await circuit.state() == "closed"

            # The 5th failure (this turn's 2nd attempt) opens the circuit: the turn says so at once.
            tripping, _ = await _turn(platform, headers)
            assert llm.request_count == 5
            assert tripping["error"]["code"] == "circuit_open"  # type: ignore[index]
            assert await circuit.state() == "open"

            # While open: no model request, the clear code and message, quickly.
            fast, fast_s = await _turn(platform, headers)
            assert llm.request_count == 5
            assert fast["status"] == "failed"
            error = fast["error"]
            assert isinstance(error, dict) and error["code"] == "circuit_open"
            assert error["message"].startswith("the model service is failing; try again in ")
            assert error["message"].endswith(" s")
            print(f"\nfirst failing turn {first_s:.2f} s; turn with the circuit open {fast_s:.2f} s")
            assert fast_s < first_s  # the first paid for 3 attempts and their backoff; this one none

            # The model recovers; after the open period one probe goes through and closes it.
            llm.set_default(None)
            await asyncio.sleep(OPEN_S + 0.2)
            assert await circuit.state() == "half_open"
            healed, _ = await _turn(platform, headers)
            assert healed["status"] == "completed", healed
            assert healed["message"]["content"] == "Echo: hi"  # type: ignore[index]
            assert llm.request_count == 6
            assert await circuit.state() == "closed"
    finally:
        await redis.aclose()
