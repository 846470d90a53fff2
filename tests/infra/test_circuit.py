"""infra.circuit against the real local Redis: the state machine, shared by two "workers"
(two clients), and the per-process fallback when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import structlog
from prometheus_client import REGISTRY

from infra.circuit import Circuit, CircuitConfig, CircuitOpen, Ticket
from infra.redis_client import create_redis
from tests.conftest import free_port

FAST = CircuitConfig(failures=3, window_s=5.0, open_s=0.5)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


def _circuit(
    redis: aioredis.Redis | None, config: CircuitConfig = FAST, *, name: str | None = None
) -> Circuit:
    return Circuit(name or f"test-{uuid.uuid4().hex[:8]}", config, redis=redis, namespace="keel-test")


async def _fail(circuit: Circuit, times: int) -> None:
    for _ in range(times):
        ticket = await circuit.admit()
        await ticket.failure()


async def test_failures_within_the_window_open_the_circuit(redis: aioredis.Redis) -> None:
    circuit = _circuit(redis)
    with structlog.testing.capture_logs() as logs:
        await _fail(circuit, 2)
        assert await circuit.state() == "closed"
        ticket = await circuit.admit()
        opened = await ticket.failure()
    assert isinstance(opened, CircuitOpen) and opened.retry_after_s == pytest.approx(0.5)
    assert await circuit.state() == "open"
    assert [e["event"] for e in logs if e["event"].startswith("circuit.")] == ["circuit.opened"]
    assert logs[-1]["dependency"] == circuit.name
    assert (
        REGISTRY.get_sample_value(
            "keel_circuit_transitions_total", {"dependency": circuit.name, "state": "open"}
        )
        == 1
    )


async def test_failures_older_than_the_window_do_not_count(redis: aioredis.Redis) -> None:
    circuit = _circuit(redis, CircuitConfig(failures=3, window_s=0.3, open_s=5))
    await _fail(circuit, 2)
    await asyncio.sleep(0.4)
    await _fail(circuit, 2)
    assert await circuit.state() == "closed"
    await _fail(circuit, 1)
    assert await circuit.state() == "open"


async def test_an_open_circuit_fails_fast_with_the_time_left(redis: aioredis.Redis) -> None:
    circuit = _circuit(redis, CircuitConfig(failures=1, window_s=5, open_s=3))
    await _fail(circuit, 1)
    await asyncio.sleep(0.2)
    with pytest.raises(CircuitOpen) as refused:
        await circuit.admit()
    assert 2.0 < refused.value.retry_after_s < 2.9
    assert refused.value.wait_s == 3
    assert "retry in 3 s" in str(refused.value)
    assert REGISTRY.get_sample_value("keel_circuit_rejections_total", {"dependency": circuit.name}) == 1


async def test_half_open_lets_exactly_one_probe_through(redis: aioredis.Redis) -> None:
    circuit = _circuit(redis)
    await _fail(circuit, 3)
    await asyncio.sleep(0.6)
    with structlog.testing.capture_logs() as logs:
        outcomes = await asyncio.gather(*(circuit.admit() for _ in range(20)), return_exceptions=True)
    tickets = [o for o in outcomes if isinstance(o, Ticket)]
    assert len(tickets) == 1 and tickets[0].probe
    assert all(isinstance(o, CircuitOpen) for o in outcomes if o is not tickets[0])
    assert [e["event"] for e in logs if e["event"].startswith("circuit.")] == ["circuit.half_open"]
    assert await circuit.state() == "half_open"


async def test_a_probe_that_succeeds_closes_the_circuit(redis: aioredis.Redis) -> None:
    circuit = _circuit(redis)
    await _fail(circuit, 3)
    await asyncio.sleep(0.6)
    probe = await circuit.admit()
    with structlog.testing.capture_logs() as logs:
        await probe.success()
    assert [e["event"] for e in logs] == ["circuit.closed"]
    assert await circuit.state() == "closed"
    second = await circuit.admit()
    assert not second.probe
    await _fail(circuit, 2)  # the old failures were forgotten: two more do not open it
    assert await circuit.state() == "closed"


async def test_a_probe_that_fails_reopens_the_circuit(redis: aioredis.Redis) -> None:
    circuit = _circuit(redis)
    await _fail(circuit, 3)
    await asyncio.sleep(0.6)
    probe = await circuit.admit()
    opened = await probe.failure()
    assert isinstance(opened, CircuitOpen)
    with pytest.raises(CircuitOpen) as refused:
        await circuit.admit()
    assert 0.3 < refused.value.retry_after_s <= 0.5


async def test_two_workers_share_the_state(redis: aioredis.Redis, redis_url: str) -> None:
    other_client = create_redis(redis_url)
    try:
        name = f"shared-{uuid.uuid4().hex[:8]}"
        worker_a = _circuit(redis, name=name)
        worker_b = _circuit(other_client, name=name)
        await _fail(worker_a, 2)
        await _fail(worker_b, 1)  # the third failure, in the other worker, opens it for both
        for worker in (worker_a, worker_b):
            with pytest.raises(CircuitOpen):
                await worker.admit()
        await asyncio.sleep(0.6)
        probe = await worker_b.admit()
        with pytest.raises(CircuitOpen):  # worker A waits for B's probe
            await worker_a.admit()
        await probe.success()
        assert not (await worker_a.admit()).probe
    finally:
        await other_client.aclose()


async def test_guard_counts_only_what_the_caller_says_is_unhealthy(redis: aioredis.Redis) -> None:
    circuit = _circuit(redis, CircuitConfig(failures=2, window_s=5, open_s=5))

    def counts(exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    for _ in range(5):  # a request the dependency refused (a 4xx) is not its failure
        with pytest.raises(ValueError):
            async with circuit.guard(counts):
                raise ValueError("bad request")
    assert await circuit.state() == "closed"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            async with circuit.guard(counts):
                raise ConnectionError("refused")
    with pytest.raises(CircuitOpen):
        async with circuit.guard(counts):
            pytest.fail("an open circuit does not run the call")


async def test_redis_down_falls_back_to_state_in_this_process() -> None:
    down = aioredis.from_url(f"redis://127.0.0.1:{free_port()}", decode_responses=True)
    try:
        circuit = _circuit(down)
        with structlog.testing.capture_logs() as logs:
            await _fail(circuit, 3)
            with pytest.raises(CircuitOpen) as refused:
                await circuit.admit()
            assert 0 < refused.value.retry_after_s <= 0.5
            assert await circuit.state() == "open"
            await asyncio.sleep(0.6)
            probe = await circuit.admit()
            assert probe.probe
            with pytest.raises(CircuitOpen):
                await circuit.admit()
            await probe.success()
            assert await circuit.state() == "closed"
        events = [e["event"] for e in logs]
        assert events.count("circuit.redis_unavailable") == 1  # logged once, not per call
        unavailable = next(e for e in logs if e["event"] == "circuit.redis_unavailable")
        assert unavailable["fallback"] == "per-process state"
        assert [e for e in events if e in ("circuit.opened", "circuit.half_open", "circuit.closed")] == [
            "circuit.opened",
            "circuit.half_open",
            "circuit.closed",
        ]
        assert all(e["local"] for e in logs if e["event"] == "circuit.opened")
    finally:
        await down.aclose()
