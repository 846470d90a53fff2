"""Follow-up turns through `keel dev` (API and worker as separate processes), from a
separate load-generator process, side by side with the bare model call in the same run.

Starts the fake OpenAI server as its own process (fixed reply), then `keel dev` on free
ports with a fresh data dir (embedded Temporal, Postgres, Redis) pointed at it; this
process only generates load. It prints:

- follow-up turn overhead over the bare model call, p50/p95 (``POST /api/v1/chat``, sequential);
- added time to first token, p95 (``POST /api/v1/chat/stream``, sequential);
- follow-up turns/s with 8 users in parallel (and the bare calls/s at the same concurrency);
- RSS of the API process (`keel dev` itself) and of the worker child, idle before and after.

It never asserts on time; see bench/README.md.

    .venv/bin/python -m bench.keel_dev_load --turns 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai

from bench.turn_overhead import (
    MODEL,
    ModeResult,
    baseline_turn,
    chat_turn,
    make_lanes,
    median,
    open_sessions,
    percentile,
    run_mode,
    stream_turn,
)
from infra.settings import Settings

USERS = 8
GOALS = (
    "goals: overhead <= 30 / <= 60 ms, added TTFT p95 <= 25 ms, >= 50 turns/s with 8 users, API RSS <= 250 MB"
)


@dataclass
class Api:
    http: httpx.AsyncClient
    turn_ids: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def _wait_ready(base: str, log: Path, proc: subprocess.Popen[bytes]) -> int:
    """Wait for /health/ready and the banner; return the worker's pid."""
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(1800):
            if proc.poll() is not None:
                text = await asyncio.to_thread(log.read_text, errors="replace")
                raise RuntimeError(f"keel dev exited:\n{text[-3000:]}")
            try:
                ready = (await http.get(f"{base}/health/ready")).status_code == 200
            except httpx.HTTPError:
                ready = False
            text = await asyncio.to_thread(log.read_text, errors="replace")
            match = re.search(r"Worker\s+pid (\d+)", text)
            if ready and match:
                return int(match.group(1))
            await asyncio.sleep(0.1)
    raise RuntimeError("keel dev did not become ready")


def _p(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}" if values else "-"


async def measure(args: argparse.Namespace, base: str, fake_url: str) -> tuple[list[str], list[str]]:
    limits = httpx.Limits(max_connections=100)
    sdk = openai.AsyncOpenAI(base_url=fake_url, api_key="x", max_retries=0, timeout=120)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        api = Api(http)
        settings = Settings()
        bare = baseline_turn(sdk, settings.system_prompt, settings.llm_max_output_tokens)
        chat, stream = chat_turn(api), stream_turn(api)
        seq_lanes = await make_lanes(api, 1, "seq")
        par_lanes = await make_lanes(api, USERS, "par")
        await open_sessions(api, seq_lanes)
        await open_sessions(api, par_lanes)
        _progress("warming up")
        for turn in (bare, chat, stream):
            await run_mode("warmup", turn, par_lanes, max(args.warmup, USERS), USERS)
        results: dict[str, ModeResult] = {}
        for name, turn, lanes, conc in (
            ("bare model call, seq", bare, seq_lanes, 1),
            ("chat follow-up, seq", chat, seq_lanes, 1),
            ("stream follow-up, seq", stream, seq_lanes, 1),
            (f"bare model call, {USERS} users", bare, par_lanes, USERS),
            (f"chat follow-up, {USERS} users", chat, par_lanes, USERS),
        ):
            _progress(name)
            results[name] = await run_mode(name, turn, lanes, args.turns, conc)
    await sdk.close()

    lines = [f"{'mode':32} {'n':>4} {'err':>4} {'p50':>7} {'p95':>7} {'ttft p95':>9} {'turns/s':>8}"]
    for name, r in results.items():
        lat = [s.latency_s for s in r.samples]
        ttft = [s.ttft_s for s in r.samples if s.ttft_s is not None]
        rate = len(r.samples) / r.wall_s if r.wall_s else 0.0
        lines.append(
            f"{name:32} {len(r.samples):>4} {len(r.errors):>4} {_p(lat, 50):>7} {_p(lat, 95):>7} "
            f"{_p(ttft, 95):>9} {rate:>8.1f}"
        )
    base_seq = results["bare model call, seq"].samples
    base_lat = median([s.latency_s for s in base_seq])
    base_ttft = median([s.ttft_s for s in base_seq if s.ttft_s is not None])
    over = [s.latency_s - base_lat for s in results["chat follow-up, seq"].samples]
    added = [s.ttft_s - base_ttft for s in results["stream follow-up, seq"].samples if s.ttft_s is not None]
    par = results[f"chat follow-up, {USERS} users"]
    figures = [
        f"follow-up turn overhead over the bare model call, p50 / p95: {_p(over, 50)} / {_p(over, 95)} ms",
        f"added time to first token (stream), p95: {_p(added, 95)} ms",
        f"follow-up turns/s, {USERS} users in parallel: {len(par.samples) / par.wall_s:.1f}",
    ]
    errors = [e for r in results.values() for e in r.errors]
    if errors:
        figures.append(f"{len(errors)} failed turns; first: {errors[0]}")
    return lines, figures


@dataclass
class Processes:
    fake: subprocess.Popen[bytes]
    dev: subprocess.Popen[bytes]
    log: Path
    base: str
    fake_url: str
    fake_port: int


def start(args: argparse.Namespace, tmp: Path) -> Processes:
    ports = {name: _free_port() for name in ("api", "temporal", "ui", "fake")}
    log = tmp / "keel-dev.log"
    _progress("starting the fake model and keel dev")
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(ports["fake"]),
         "--ttft-ms", str(args.ttft_ms), "--chunk-delay-ms", str(args.chunk_delay_ms),
         "--words", str(args.words)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    fake_url = f"http://127.0.0.1:{ports['fake']}/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        {
            "KEEL_DATA_DIR": str(tmp / "data"),
            "KEEL_API_PORT": str(ports["api"]),
            "KEEL_TEMPORAL_PORT": str(ports["temporal"]),
            "KEEL_TEMPORAL_UI_PORT": str(ports["ui"]),
            "KEEL_LLM_BASE_URL": fake_url,
            "KEEL_LLM_API_KEY": "x",
            "KEEL_LLM_MODEL": MODEL,
            "KEEL_LOG_LEVEL": "WARNING",
            "KEEL_LOG_JSON": "false",
            "KEEL_RATE_LIMIT_PER_MINUTE": "1000000",
        }
    )
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "dev"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{ports['api']}"
    return Processes(fake, dev, log, base, fake_url, ports["fake"])


def stop(procs: Processes) -> None:
    procs.dev.send_signal(signal.SIGINT)
    procs.dev.wait(timeout=120)
    procs.fake.terminate()
    procs.fake.wait(timeout=30)


async def amain(args: argparse.Namespace, procs: Processes) -> str:
    await asyncio.to_thread(_wait_port, procs.fake_port, procs.fake, 30)
    worker = await _wait_ready(procs.base, procs.log, procs.dev)
    await asyncio.sleep(5)
    idle_before = (_rss_mb(procs.dev.pid), _rss_mb(worker))
    lines, figures = await measure(args, procs.base, procs.fake_url)
    await asyncio.sleep(5)
    idle_after = (_rss_mb(procs.dev.pid), _rss_mb(worker))
    figures.append(
        f"RSS of the API process, idle: {idle_before[0]:.0f} MB before load, {idle_after[0]:.0f} MB after "
        f"(worker: {idle_before[1]:.0f} / {idle_after[1]:.0f} MB)"
    )
    head = [
        "",
        f"keel dev load: {args.turns} turns per mode; fake model ttft={args.ttft_ms:g} ms "
        f"chunk delay={args.chunk_delay_ms:g} ms words={args.words}; os.cpu_count()={os.cpu_count()}; "
        f"load avg {'/'.join(f'{v:.1f}' for v in os.getloadavg())} at the end",
        "processes: load generator (this), fake model, keel dev (API), keel worker, Temporal, "
        "Postgres, Redis",
        "",
    ]
    return "\n".join([*head, *lines, "", *figures, GOALS])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.keel_dev_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=100, help="measured turns per mode (default 100)")
    p.add_argument("--warmup", type=int, default=8, help="uncounted turns per endpoint")
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--chunk-delay-ms", type=float, default=2.0)
    p.add_argument("--words", type=int, default=50)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="keel-dev-load-") as tmp:
        procs = start(args, Path(tmp))
        try:
            report = asyncio.run(amain(args, procs))
        finally:
            stop(procs)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
