"""Circuit breakers around the activities' dependencies (infra.circuit): which failures
count, and what an open circuit becomes (``circuit_open``, docs/resilience.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from infra.circuit import CircuitOpen, Circuits

from .errors import circuit_open, vector_unhealthy


@asynccontextmanager
async def vector_circuit(circuits: Circuits) -> AsyncIterator[None]:
    """A knowledge search under the vector index's circuit; open: ``circuit_open`` at once
    (the turn goes on without retrieval, the direct query answers 503)."""
    try:
        async with circuits.get("vector").guard(vector_unhealthy):
            yield
    except CircuitOpen as exc:
        raise circuit_open(exc, "knowledge search", wait=False) from exc
