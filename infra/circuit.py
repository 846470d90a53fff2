"""Circuit breakers per dependency, their state in Redis so every worker shares it.

A circuit is *closed* until ``failures`` unhealthy failures fall within ``window_s``;
then it is *open* for ``open_s``: :meth:`Circuit.admit` refuses with
:class:`CircuitOpen` (carrying the time left open) without calling the dependency.
After the open period the next caller is let through alone as the *half-open* probe
(others are refused while it runs, for at most ``probe_s``); the probe's success
closes the circuit, its failure re-opens it for another ``open_s``.

Only the caller decides what counts as a failure (5xx, timeouts, connection errors;
never a 4xx it caused). Each decision is one atomic Lua script on Redis, timed by the
Redis server's clock, so workers on different machines agree. When Redis cannot be
reached, a circuit falls back to state kept in this process (logged once, with
``circuit.redis_unavailable``) and goes back to Redis when it answers again.

Transitions are logged (``circuit.opened``, ``circuit.half_open``, ``circuit.closed``)
and counted in ``keel_circuit_transitions_total``; refusals in
``keel_circuit_rejections_total``; ``keel_circuit_state`` is the state this process
last saw (0 closed, 1 half-open, 2 open). docs/resilience.md#circuit-breakers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from infra.settings import Settings

log = structlog.get_logger(__name__)

State = Literal["closed", "half_open", "open"]
_STATE_VALUE: dict[str, float] = {"closed": 0, "half_open": 1, "open": 2}

CIRCUIT_TRANSITIONS = Counter(
    "keel_circuit_transitions_total", "Circuit breaker state changes", ["dependency", "state"]
)
CIRCUIT_REJECTIONS = Counter(
    "keel_circuit_rejections_total", "Calls refused by an open circuit", ["dependency"]
)
CIRCUIT_STATE = Gauge(
    "keel_circuit_state",
    "Circuit state last seen by this process (0 closed, 1 half-open, 2 open)",
    ["dependency"],
)


@dataclass(frozen=True)
class CircuitConfig:
    failures: int = 5
    window_s: float = 30.0
    open_s: float = 60.0
    #: How long a half-open probe holds the circuit before another caller may probe.
    probe_s: float | None = None

    @property
    def probe_lease_s(self) -> float:
        return self.probe_s if self.probe_s is not None else self.open_s


class CircuitOpen(Exception):
    """The circuit refused the call; retry after ``retry_after_s``."""

    def __init__(self, dependency: str, retry_after_s: float) -> None:
        self.dependency = dependency
        self.retry_after_s = max(retry_after_s, 0.0)
        super().__init__(f"the circuit of {dependency} is open; retry in {self.wait_s} s")

    @property
    def wait_s(self) -> int:
        """Whole seconds to wait, at least 1 (what a user is told)."""
        return max(1, int(self.retry_after_s + 0.999))


# KEYS[1] the state hash, KEYS[2] the failure timestamps (a sorted set)
# ARGV: op ("admit" | "success" | "failure"), failures, window_ms, open_ms, probe_ms, member, probe(0/1)
# Returns {allowed (1/0), wait_ms, transition ("" | "opened" | "half_open" | "closed"), probe (1/0)}
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local open_ms = tonumber(ARGV[4])
local probe_ms = tonumber(ARGV[5])
local keep = open_ms + probe_ms + window + 3600000
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
local function reopen()
  redis.call('HSET', KEYS[1], 'open_until', now + open_ms, 'probe_until', 0)
  redis.call('PEXPIRE', KEYS[1], keep)
  redis.call('DEL', KEYS[2])
  return {0, open_ms, 'opened', 0}
end
if op == 'admit' then
  if open_until == 0 then return {1, 0, '', 0} end
  if now < open_until then return {0, open_until - now, '', 0} end
  if now < probe_until then return {0, probe_until - now, '', 0} end
  local first = probe_until == 0 and 'half_open' or ''
  redis.call('HSET', KEYS[1], 'probe_until', now + probe_ms)
  redis.call('PEXPIRE', KEYS[1], keep)
  return {1, 0, first, 1}
elseif op == 'success' then
  if ARGV[7] == '1' and open_until > 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    return {1, 0, 'closed', 0}
  end
  return {1, 0, '', 0}
else
  if ARGV[7] == '1' and open_until > 0 then return reopen() end
  if open_until > 0 then return {0, 0, '', 0} end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('ZADD', KEYS[2], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], window)
  if redis.call('ZCARD', KEYS[2]) >= threshold then return reopen() end
  return {1, 0, '', 0}
end
"""


@dataclass
class _LocalState:
    """The same state machine in this process (when Redis cannot be reached)."""

    failures: deque[float] = field(default_factory=deque)
    open_until: float = 0.0
    probe_until: float = 0.0

    def run(
        self, op: str, config: CircuitConfig, *, probe: bool, now: float
    ) -> tuple[bool, float, str, bool]:
        if op == "admit":
            if self.open_until == 0:
                return True, 0.0, "", False
            if now < self.open_until:
                return False, self.open_until - now, "", False
            if now < self.probe_until:
                return False, self.probe_until - now, "", False
            first = "half_open" if self.probe_until == 0 else ""
            self.probe_until = now + config.probe_lease_s
            return True, 0.0, first, True
        if op == "success":
            if probe and self.open_until > 0:
                self.failures.clear()
                self.open_until = self.probe_until = 0.0
                return True, 0.0, "closed", False
            return True, 0.0, "", False
        if probe and self.open_until > 0:
            return self._reopen(config, now)
        if self.open_until > 0:
            return False, 0.0, "", False
        while self.failures and self.failures[0] <= now - config.window_s:
            self.failures.popleft()
        self.failures.append(now)
        if len(self.failures) >= config.failures:
            return self._reopen(config, now)
        return True, 0.0, "", False

    def _reopen(self, config: CircuitConfig, now: float) -> tuple[bool, float, str, bool]:
        self.failures.clear()
        self.open_until = now + config.open_s
        self.probe_until = 0.0
        return False, config.open_s, "opened", False


class Ticket:
    """One admitted call: report how it went with :meth:`success` or :meth:`failure`."""

    def __init__(self, circuit: Circuit, *, probe: bool) -> None:
        self._circuit = circuit
        self.probe = probe

    async def success(self) -> None:
        if self.probe:  # a closed circuit has nothing to record for a success
            await self._circuit._run("success", probe=True)

    async def failure(self) -> CircuitOpen | None:
        """Record the failure; the :class:`CircuitOpen` to raise when it opened the circuit."""
        _allowed, wait_s, transition, _probe = await self._circuit._run("failure", probe=self.probe)
        return CircuitOpen(self._circuit.name, wait_s) if transition == "opened" else None


class Circuit:
    """One dependency's circuit (``llm:gpt-4o``, ``vector``, ``mcp:<server id>``, ``slack``)."""

    def __init__(
        self,
        name: str,
        config: CircuitConfig,
        *,
        redis: aioredis.Redis | None,
        namespace: str = "keel",
        redis_timeout_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self._redis = redis
        self._keys = [f"{namespace}:circuit:{name}", f"{namespace}:circuit:{name}:failures"]
        self._timeout_s = redis_timeout_s
        self._clock = clock
        self._local = _LocalState()
        self._degraded = False

    async def admit(self) -> Ticket:
        """A ticket for one call, or :class:`CircuitOpen` (counted, no call made)."""
        allowed, wait_s, _transition, probe = await self._run("admit", probe=False)
        if not allowed:
            CIRCUIT_REJECTIONS.labels(self.name).inc()
            raise CircuitOpen(self.name, wait_s)
        return Ticket(self, probe=probe)

    @asynccontextmanager
    async def guard(self, counts: Callable[[BaseException], bool]) -> AsyncIterator[Ticket]:
        """``async with circuit.guard(counts):`` admit, call, record: an exception for which
        ``counts`` is true is a failure; any other exception is neither (the caller's fault)."""
        ticket = await self.admit()
        try:
            yield ticket
        except Exception as exc:
            if counts(exc):
                await ticket.failure()
            elif ticket.probe:
                await ticket.success()  # the dependency answered: it is healthy
            raise
        await ticket.success()

    async def state(self) -> State:
        """The state now, as every worker sees it (the local state when Redis is down)."""
        if self._redis is not None:
            try:
                async with asyncio.timeout(self._timeout_s):
                    found = await self._redis.hmget(self._keys[0], ["open_until", "probe_until"])
                    now_s, now_us = await self._redis.time()
                open_until, probe_until = (float(v or 0) for v in found)
                now_ms = now_s * 1000 + now_us // 1000
                return _state(open_until, probe_until, now_ms)
            except (RedisError, OSError, TimeoutError):
                pass
        return _state(self._local.open_until, self._local.probe_until, self._clock())

    async def _run(self, op: str, *, probe: bool) -> tuple[bool, float, str, bool]:
        config = self.config
        result: tuple[bool, float, str, bool] | None = None
        if self._redis is not None:
            try:
                async with asyncio.timeout(self._timeout_s):
                    raw = await self._redis.eval(
                        _SCRIPT,
                        2,
                        *self._keys,
                        op,
                        config.failures,
                        int(config.window_s * 1000),
                        int(config.open_s * 1000),
                        int(config.probe_lease_s * 1000),
                        uuid.uuid4().hex,
                        "1" if probe else "0",
                    )
                result = (bool(int(raw[0])), int(raw[1]) / 1000, _text(raw[2]), bool(int(raw[3])))
                if self._degraded:
                    self._degraded = False
                    log.info("circuit.redis_restored", dependency=self.name)
            except (RedisError, OSError, TimeoutError) as exc:
                if not self._degraded:
                    self._degraded = True
                    log.warning(
                        "circuit.redis_unavailable",
                        dependency=self.name,
                        error=f"{type(exc).__name__}: {exc}"[:200],
                        fallback="per-process state",
                    )
        if result is None:
            result = self._local.run(op, config, probe=probe, now=self._clock())
        self._transition(result[2])
        return result

    def _transition(self, transition: str) -> None:
        if not transition:
            return
        state = "open" if transition == "opened" else transition
        CIRCUIT_TRANSITIONS.labels(self.name, state).inc()
        CIRCUIT_STATE.labels(self.name).set(_STATE_VALUE[state])
        fields: dict[str, object] = {"dependency": self.name, "local": self._degraded}
        if transition == "opened":
            config = self.config
            fields.update(open_s=config.open_s, failures=config.failures, window_s=config.window_s)
        (log.warning if transition == "opened" else log.info)(f"circuit.{transition}", **fields)


class Circuits:
    """Every circuit of one process, made on first use (``mcp:<server id>`` are many)."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis | None,
        configs: dict[str, CircuitConfig],
        namespace: str = "keel",
        redis_timeout_s: float = 1.0,
    ) -> None:
        self._redis = redis
        self._configs = configs
        self._namespace = namespace
        self._timeout_s = redis_timeout_s
        self._made: dict[str, Circuit] = {}

    def get(self, kind: str, name: str | None = None) -> Circuit:
        """The circuit of ``kind`` (``llm``, ``vector``, ``mcp``, ``slack``), ``name`` for one
        of several (a model, a tool server)."""
        full = f"{kind}:{name}" if name else kind
        circuit = self._made.get(full)
        if circuit is None:
            circuit = Circuit(
                full,
                self._configs.get(kind, CircuitConfig()),
                redis=self._redis,
                namespace=self._namespace,
                redis_timeout_s=self._timeout_s,
            )
            self._made[full] = circuit
        return circuit


def _state(open_until: float, probe_until: float, now: float) -> State:
    if open_until == 0:
        return "closed"
    if now < open_until:
        return "open"
    return "half_open"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def circuit_configs(settings: Settings) -> dict[str, CircuitConfig]:
    """``KEEL_CIRCUIT_<KIND>_{FAILURES,WINDOW_S,OPEN_S}`` for each kind of dependency."""
    return {
        kind: CircuitConfig(
            failures=getattr(settings, f"circuit_{kind}_failures"),
            window_s=getattr(settings, f"circuit_{kind}_window_s"),
            open_s=getattr(settings, f"circuit_{kind}_open_s"),
        )
        for kind in ("llm", "vector", "mcp", "slack")
    }


def create_circuits(settings: Settings, redis: aioredis.Redis | None) -> Circuits:
    return Circuits(redis=redis, configs=circuit_configs(settings), namespace=settings.circuit_namespace)
