"""Per-turn overhead of Keel's chat path against a direct call to the same model.

Brings up the stack the way ``tests/conftest.py`` does, all in this process:
a Temporal dev server (in memory, ``.venv/bin/temporal``), a fresh Postgres
database (dropped at the end), Redis, the fake OpenAI server with a fixed reply,
the API (uvicorn on a free port) and an in-process chat worker. Then it measures

- baseline: the fake called directly with ``openai.AsyncOpenAI`` (streaming);
- ``POST /api/v1/chat`` (latency) and ``POST /api/v1/chat/stream`` (TTFT and
  latency), each for a new session per turn and for follow-up turns in an
  existing session,

sequentially and at concurrency C, and prints a table. It never asserts on
time; see bench/README.md for how to read the figures.

    .venv/bin/python -m bench.turn_overhead --turns 100 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import math
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import openai
from pydantic import SecretStr
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.names import turn_stream_key
from infra.db.migrate import apply_migrations
from infra.knowledge import open_knowledge
from infra.logging import configure_logging
from infra.redis_client import create_redis
from infra.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support.sse import read_events
from workers.api_server import bind_socket, serving
from workers.chat_worker import chat_activities, running_chat_workers
from workflows import search_attributes

VENV_BIN = Path(sys.executable).parent
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MODEL = "fake-model"
SEARCH_ATTRIBUTES = (search_attributes.USER_ID, search_attributes.SESSION_ID, search_attributes.KIND)

# Targets the figures are compared with (printed, never asserted).
TARGET_OVERHEAD_P95_MS = 100.0
TARGET_ADDED_TTFT_P95_MS = 50.0
TARGET_TURNS_PER_S = 20.0

_VOCABULARY = (
    *("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "keel"),
    *("workers", "stream", "tokens", "through", "temporal", "activities", "and", "every"),
    *("chunk", "arrives", "right", "on", "time"),
)


# ---------------------------------------------------------------- stack
class _UnretrievedUpdateWaits(logging.Filter):
    """Counts (and hides) asyncio's "Task exception was never retrieved" for cancelled update waits.

    ``POST /chat/stream`` cancels its ``handle.result()`` task once the SSE relay has
    seen ``turn.completed``; the task then ends with WorkflowUpdateRPCTimeoutOrCancelledError,
    which nobody retrieves, so asyncio logs a traceback at ERROR for most streamed turns.
    The bench reports the count instead of flooding the terminal.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "never retrieved" in message and "WorkflowUpdateRPCTimeoutOrCancelledError" in message:
            self.count += 1
            return False
        return True


UNRETRIEVED = _UnretrievedUpdateWaits()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fixed_text(words: int) -> str:
    return " ".join(_VOCABULARY[i % len(_VOCABULARY)] for i in range(max(words, 1)))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def serving_api(settings: Settings) -> contextlib.AbstractAsyncContextManager[object]:
    """The API on ``settings.api_port``, served by the harness of ``keel api``/``keel dev``."""
    return serving(create_app(settings), bind_socket("127.0.0.1", settings.api_port), graceful_shutdown_s=2)


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    name = f"keel_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = with_database(admin_url, name)
        await apply_migrations(url)
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.contextmanager
def _stdout_to_stderr() -> Generator[None, None, None]:
    """Point fd 1 at stderr meanwhile, so a child started now (the dev server's banner) keeps off stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.asynccontextmanager
async def temporal_dev_server() -> AsyncIterator[WorkflowEnvironment]:
    with _stdout_to_stderr():
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(VENV_BIN / "temporal"),
            data_converter=pydantic_data_converter,
            search_attributes=SEARCH_ATTRIBUTES,
        )
    try:
        yield env
    finally:
        await env.shutdown()


class TurnClient(Protocol):
    """What the turn functions need: an HTTP client on the API, and where to note turn ids."""

    http: httpx.AsyncClient
    turn_ids: list[str]


@dataclass
class Stack:
    settings: Settings
    fake: FakeOpenAI
    http: httpx.AsyncClient
    turn_ids: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def keel_stack(args: argparse.Namespace) -> AsyncIterator[Stack]:
    """Everything torn down in reverse order, on success, error or Ctrl-C."""
    reply = Reply(
        fixed_text(args.words), ttft_s=args.ttft_ms / 1000, chunk_delay_s=args.chunk_delay_ms / 1000
    )
    async with contextlib.AsyncExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-bench-")))
        fake = stack.enter_context(FakeOpenAI(default=reply, max_recorded=50))
        env = await stack.enter_async_context(temporal_dev_server())
        database_url = await stack.enter_async_context(fresh_database(args.postgres_url))
        settings = Settings(
            env="test",
            auth_mode="dev",
            data_dir=data_dir,
            temporal_address=str(env.client.service_client.config.target_host),
            database_url=database_url,
            redis_url=args.redis_url,
            llm_base_url=fake.base_url,
            llm_api_key=SecretStr("x"),
            llm_model=MODEL,
            chat_task_queue=f"keel-chat-bench-{uuid.uuid4().hex[:8]}",
            ingest_task_queue=f"keel-ingest-bench-{uuid.uuid4().hex[:8]}",
            qdrant_path=data_dir / "qdrant",
            api_port=free_port(),
            log_level="WARNING",
            log_json=False,
        )
        # The worker owns the knowledge stack (the API asks it for queries). Chat turns here use none.
        knowledge = await stack.enter_async_context(open_knowledge(settings))
        activities = await stack.enter_async_context(chat_activities(settings, knowledge))
        await stack.enter_async_context(running_chat_workers(env.client, settings, activities))
        await stack.enter_async_context(serving_api(settings))
        limits = httpx.Limits(max_connections=max(100, 2 * args.concurrency))
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=120, limits=limits)
        )
        bench = Stack(settings=settings, fake=fake, http=http)
        stack.push_async_callback(_drop_turn_streams, settings, bench.turn_ids)
        yield bench


async def _drop_turn_streams(settings: Settings, turn_ids: list[str]) -> None:
    """The turns' Redis streams would otherwise linger for stream_ttl_s."""
    if not turn_ids or not settings.redis_url:
        return
    redis = create_redis(settings.redis_url)
    try:
        for start in range(0, len(turn_ids), 500):
            await redis.delete(*(turn_stream_key(t) for t in turn_ids[start : start + 500]))
    finally:
        await redis.aclose()


# ---------------------------------------------------------------- turns
@dataclass
class Lane:
    """Who sends a turn: a user and, for follow-up turns, that user's session."""

    user_id: str
    headers: dict[str, str]
    session_id: str | None = None


@dataclass(frozen=True)
class Sample:
    latency_s: float
    ttft_s: float | None = None


TurnFn = Callable[[Lane, str], Awaitable[Sample]]


class TurnFailed(RuntimeError):
    pass


def _message(i: int) -> str:
    return f"Benchmark turn {i}: what is the capital of France? Answer in one paragraph."


def baseline_turn(client: openai.AsyncOpenAI, system_prompt: str, max_tokens: int) -> TurnFn:
    async def turn(_lane: Lane, message: str) -> Sample:
        start = time.perf_counter()
        ttft: float | None = None
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": system_prompt}, {"role": "user", "content": message}],
            max_tokens=max_tokens,
            stream=True,
        )
        async for chunk in stream:
            if ttft is None and chunk.choices and chunk.choices[0].delta.content:
                ttft = time.perf_counter() - start
        latency = time.perf_counter() - start
        if ttft is None:
            raise TurnFailed("no content delta")
        return Sample(latency, ttft)

    return turn


def _body(lane: Lane, message: str) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if lane.session_id is not None:
        body["session_id"] = lane.session_id
    return body


def chat_turn(bench: TurnClient) -> TurnFn:
    async def turn(lane: Lane, message: str) -> Sample:
        start = time.perf_counter()
        resp = await bench.http.post("/api/v1/chat", json=_body(lane, message), headers=lane.headers)
        latency = time.perf_counter() - start
        if resp.status_code != 200:
            raise TurnFailed(f"HTTP {resp.status_code}: {resp.text[:200]}")
        data = resp.json()
        bench.turn_ids.append(str(data["turn_id"]))
        if data["status"] != "completed":
            raise TurnFailed(f"turn {data['status']}: {data.get('error')}")
        return Sample(latency)

    return turn


def stream_turn(bench: TurnClient) -> TurnFn:
    async def turn(lane: Lane, message: str) -> Sample:
        ttft: float | None = None
        latency: float | None = None
        start = time.perf_counter()
        async with bench.http.stream(
            "POST", "/api/v1/chat/stream", json=_body(lane, message), headers=lane.headers
        ) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise TurnFailed(f"HTTP {resp.status_code}: {resp.text[:200]}")
            bench.turn_ids.append(resp.headers.get("x-turn-id", ""))
            async for event in read_events(resp):
                now = time.perf_counter()
                if event.event == "message.delta" and ttft is None:
                    ttft = now - start
                elif event.event == "turn.completed" and latency is None:
                    latency = now - start
                elif event.event == "error":
                    raise TurnFailed(f"error event: {event.data}")
        if latency is None or ttft is None:
            raise TurnFailed(f"stream ended early (ttft={ttft}, completed={latency is not None})")
        return Sample(latency, ttft)

    return turn


# ---------------------------------------------------------------- runs
@dataclass
class ModeResult:
    name: str
    concurrency: int
    samples: list[Sample]
    errors: list[str]
    wall_s: float
    cpu_s: float
    baseline: ModeResult | None = None


async def run_mode(name: str, turn: TurnFn, lanes: Sequence[Lane], n: int, concurrency: int) -> ModeResult:
    """N turns, at most ``concurrency`` in flight; each in-flight turn owns a lane.

    A lane (user, session) is never used by two turns at once, so follow-up
    turns do not queue behind each other in their session's workflow.
    """
    if len(lanes) < concurrency:
        raise ValueError("need at least one lane per concurrent turn")
    free: asyncio.Queue[Lane] = asyncio.Queue()
    for lane in lanes:
        free.put_nowait(lane)
    sem = asyncio.Semaphore(concurrency)
    samples: list[Sample] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            lane = await free.get()
            try:
                samples.append(await turn(lane, _message(i)))
            except (TurnFailed, httpx.HTTPError, openai.OpenAIError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                free.put_nowait(lane)

    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return ModeResult(name, concurrency, samples, errors, wall, cpu)


async def make_lanes(bench: TurnClient, count: int, prefix: str) -> list[Lane]:
    lanes = []
    for i in range(count):
        user_id = f"bench-{prefix}-{i}-{uuid.uuid4().hex[:6]}"
        resp = await bench.http.post("/api/v1/auth/dev-token", json={"user_id": user_id})
        resp.raise_for_status()
        lanes.append(Lane(user_id, {"Authorization": f"Bearer {resp.json()['access_token']}"}))
    return lanes


async def open_sessions(bench: TurnClient, lanes: list[Lane]) -> None:
    """One session per lane, opened with a first (uncounted) turn."""

    async def open_one(lane: Lane) -> None:
        resp = await bench.http.post("/api/v1/chat", json={"message": "hello"}, headers=lane.headers)
        if resp.status_code != 200:
            raise TurnFailed(f"could not open a session: HTTP {resp.status_code}: {resp.text[:200]}")
        data = resp.json()
        bench.turn_ids.append(str(data["turn_id"]))
        lane.session_id = str(data["session_id"])

    await asyncio.gather(*(open_one(lane) for lane in lanes))


async def run_all(args: argparse.Namespace, bench: Stack) -> list[ModeResult]:
    n, c = args.turns, args.concurrency
    sdk = openai.AsyncOpenAI(base_url=bench.fake.base_url, api_key="x", max_retries=0, timeout=120)
    try:
        baseline = baseline_turn(sdk, bench.settings.system_prompt, bench.settings.llm_max_output_tokens)
        chat, stream = chat_turn(bench), stream_turn(bench)
        users = await make_lanes(bench, c, "user")

        progress("warming up")
        warm = max(args.warmup, 1)
        for turn in (baseline, chat, stream):
            await run_mode("warmup", turn, users, warm, 1)
            await run_mode("warmup", turn, users, warm, c)

        results: list[ModeResult] = []
        for conc in (1, c):
            label = "seq" if conc == 1 else f"C={conc}"
            progress(f"baseline {label}")
            base = await run_mode(f"baseline direct openai, {label}", baseline, users, n, conc)
            results.append(base)
            for kind, turn in (("chat", chat), ("stream", stream)):
                progress(f"{kind} new-session {label}")
                res = await run_mode(f"{kind} new session, {label}", turn, users, n, conc)
                res.baseline = base
                results.append(res)
                progress(f"{kind} follow-up {label}")
                lanes = await make_lanes(bench, c, f"{kind}-{conc}")
                await open_sessions(bench, lanes)
                res = await run_mode(f"{kind} follow-up, {label}", turn, lanes, n, conc)
                res.baseline = base
                results.append(res)
        return results
    finally:
        await sdk.close()


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- report
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value * 1000:.1f}"


@dataclass(frozen=True)
class Row:
    result: ModeResult
    lat: tuple[float, float]
    overhead: tuple[float, float] | None
    ttft: tuple[float, float] | None
    added_ttft: tuple[float, float] | None

    @property
    def turns_per_s(self) -> float:
        return len(self.result.samples) / self.result.wall_s if self.result.wall_s > 0 else math.nan

    @property
    def cpu_per_turn_s(self) -> float:
        """CPU time of this whole process (every thread) per turn."""
        done = len(self.result.samples) + len(self.result.errors)
        return self.result.cpu_s / done if done else math.nan


def _p50_p95(values: Sequence[float]) -> tuple[float, float] | None:
    return (percentile(values, 50), percentile(values, 95)) if values else None


def summarise(result: ModeResult) -> Row:
    lat = [s.latency_s for s in result.samples]
    ttfts = [s.ttft_s for s in result.samples if s.ttft_s is not None]
    base = result.baseline
    overhead = added = None
    if base is not None:
        base_lat = median([s.latency_s for s in base.samples])
        overhead = _p50_p95([v - base_lat for v in lat])
        base_ttft = median([s.ttft_s for s in base.samples if s.ttft_s is not None])
        added = _p50_p95([v - base_ttft for v in ttfts])
    return Row(result, _p50_p95(lat) or (math.nan, math.nan), overhead, _p50_p95(ttfts), added)


_COLUMNS = (
    ("mode", 34),
    ("n", 5),
    ("err", 4),
    ("lat p50", 8),
    ("lat p95", 8),
    ("ovh p50", 8),
    ("ovh p95", 8),
    ("ttft p50", 9),
    ("ttft p95", 9),
    ("+ttft p50", 10),
    ("+ttft p95", 10),
    ("turns/s", 8),
    ("cpu/turn", 8),
)


def _line(cells: Sequence[str]) -> str:
    first, *rest = (
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, (_name, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
    )
    return "  ".join([first, *rest])


def _pair(value: tuple[float, float] | None) -> list[str]:
    return [_ms(value[0]), _ms(value[1])] if value else ["-", "-"]


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def render(args: argparse.Namespace, results: list[ModeResult], elapsed_s: float, load_before: str) -> str:
    rows = [summarise(r) for r in results]
    out = [
        "",
        "Keel chat turn overhead (times in ms; ovh = latency - baseline median latency at the same "
        "concurrency; +ttft = TTFT - baseline median TTFT at the same concurrency; cpu/turn = CPU "
        "time of this process, all threads, per turn)",
        f"machine: os.cpu_count()={os.cpu_count()}  python {platform.python_version()}  "
        f"{platform.system()} {platform.machine()}  load avg 1/5/15 min: {load_before} before, "
        f"{_load()} after",
        f"run: turns={args.turns} concurrency={args.concurrency} fake LLM ttft={args.ttft_ms:g} ms "
        f"chunk delay={args.chunk_delay_ms:g} ms words={args.words}; API, worker, load generator in one "
        f"process, fake LLM in a thread; {elapsed_s:.0f} s in all",
        "",
        _line([name for name, _w in _COLUMNS]),
        _line(["-" * w for _n, w in _COLUMNS]),
    ]
    for row in rows:
        r = row.result
        out.append(
            _line(
                [
                    r.name,
                    str(len(r.samples)),
                    str(len(r.errors)),
                    *_pair(row.lat),
                    *_pair(row.overhead),
                    *_pair(row.ttft),
                    *_pair(row.added_ttft),
                    f"{row.turns_per_s:.1f}",
                    _ms(row.cpu_per_turn_s),
                ]
            )
        )
    out.append(
        _line(
            [
                "target",
                "",
                "",
                "",
                "",
                "",
                f"<={TARGET_OVERHEAD_P95_MS:g}",
                "",
                "",
                "",
                f"<={TARGET_ADDED_TTFT_P95_MS:g}",
                f">={TARGET_TURNS_PER_S:g}@C",
                "",
            ]
        )
    )
    out += ["", *_verdicts(args, rows)]
    errors = [e for r in results for e in r.errors]
    if errors:
        out += ["", f"{len(errors)} failed turns; first: {errors[0]}"]
    if UNRETRIEVED.count:
        out += [
            "",
            f"note: hid {UNRETRIEVED.count} asyncio 'Task exception was never retrieved' errors "
            "(WorkflowUpdateRPCTimeoutOrCancelledError from the cancelled handle.result() "
            "task in POST /api/v1/chat/stream)",
        ]
    return "\n".join(out)


def _verdicts(args: argparse.Namespace, rows: list[Row]) -> list[str]:
    lines = ["against the targets (informational, not asserted):"]
    for row in rows:
        r = row.result
        if r.baseline is None:
            continue
        parts = []
        if row.overhead is not None:
            ok = row.overhead[1] <= TARGET_OVERHEAD_P95_MS / 1000
            parts.append(f"overhead p95 {_ms(row.overhead[1])} ms {'ok' if ok else 'OVER'}")
        if row.added_ttft is not None:
            ok = row.added_ttft[1] <= TARGET_ADDED_TTFT_P95_MS / 1000
            parts.append(f"added TTFT p95 {_ms(row.added_ttft[1])} ms {'ok' if ok else 'OVER'}")
        if r.concurrency == args.concurrency and r.concurrency > 1:
            ok = row.turns_per_s >= TARGET_TURNS_PER_S
            parts.append(f"{row.turns_per_s:.1f} turns/s {'ok' if ok else 'UNDER'}")
        lines.append(f"  {r.name:34}  " + "; ".join(parts))
    return lines


# ---------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.turn_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=100, help="measured turns per mode (default 100)")
    p.add_argument("--concurrency", type=int, default=10, help="turns in flight in the concurrent modes")
    p.add_argument("--ttft-ms", type=float, default=20.0, help="fake LLM delay before its first chunk")
    p.add_argument("--chunk-delay-ms", type=float, default=2.0, help="fake LLM delay between later chunks")
    p.add_argument("--words", type=int, default=50, help="words in the fake LLM's reply (one per chunk)")
    p.add_argument("--warmup", type=int, default=5, help="uncounted turns per endpoint before measuring")
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL; a bench DB is made")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    p.add_argument("--profile", type=Path, help="write cProfile stats of the event-loop thread here")
    args = p.parse_args(argv)
    if args.turns < 1 or args.concurrency < 1:
        p.error("--turns and --concurrency must be at least 1")
    return args


async def amain(args: argparse.Namespace) -> str:
    start, load_before = time.perf_counter(), _load()
    progress("starting Temporal, Postgres database, fake LLM, API and worker")
    async with keel_stack(args) as bench:
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        try:
            results = await run_all(args, bench)
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
        progress("stopping")
    return render(args, results, time.perf_counter() - start, load_before)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(level="WARNING", json=False)
    logging.getLogger("asyncio").addFilter(UNRETRIEVED)
    try:
        report = asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped and the database dropped", file=sys.stderr)
        return 130
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
