"""Throughput of the local embedder (bundled all-MiniLM-L6-v2 on CPU).

Embeds ``--sentences`` deterministic ~30-word English sentences with
``infra.embeddings.LocalEmbedder`` at each ``--batch-sizes`` value and prints
sentences/s, plus how late a 10 ms event-loop ticker ran meanwhile (the cost to
an API sharing the process). ``sent/cpu-s`` divides by the process's CPU time
(all threads), which moves less than wall time when other work shares the
machine. A ``direct`` row calls ``SentenceTransformer.encode`` on the whole list
in the calling thread (no per-batch ``asyncio.to_thread``; the ticker cannot run).
Nothing is asserted.

    .venv/bin/python -m bench.embeddings
    .venv/bin/python -m bench.embeddings --batch-sizes 16 64 128 --sentences 1000 --repeat 3
    .venv/bin/python -m bench.embeddings --threads 1      # torch.set_num_threads(1) first
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from infra.embeddings import LocalEmbedder

_VOCABULARY = (
    "the a employee policy travel expense report manager approval laptop password reset account vpn "
    "network office building holiday leave request payroll salary benefits insurance health dental "
    "quarterly revenue growth customer support ticket escalation incident security training compliance "
    "deadline project roadmap meeting agenda budget forecast invoice vendor contract renewal onboarding "
    "handbook remote work schedule overtime parking badge printer software license update release"
)
WORDS = _VOCABULARY.split(" ")


def sentences(n: int, words: int = 30, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "." for _ in range(n)]


async def _timed(run: Callable[[], Awaitable[object]]) -> tuple[float, float, float, float]:
    """(wall s, process CPU s, p99 ticker lateness ms, max ticker lateness ms) for one run."""
    late: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.010)
            late.append((time.perf_counter() - t0 - 0.010) * 1000)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start its first sleep
    t0, c0 = time.perf_counter(), time.process_time()
    await run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    stop.set()
    await tick
    late.sort()
    p99 = late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0
    return elapsed, cpu, p99, late[-1] if late else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--words", type=int, default=30)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per batch size (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before loading")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import torch  # imported here so the figure below includes it

    if args.threads:
        torch.set_num_threads(args.threads)
    probe = LocalEmbedder()
    dimension = await probe.ensure_dimension()
    load_s = time.perf_counter() - t0
    texts = sentences(args.sentences, args.words)
    await probe.embed_documents(texts[:64])  # warm-up (first forward pass allocates)

    print(
        f"python {platform.python_version()}  torch {torch.__version__}  cpus {os.cpu_count()}  "
        f"torch threads {torch.get_num_threads()}  model {probe.model_name} (dim {dimension})"
    )
    print(f"import + load: {load_s:.1f} s   sentences: {len(texts)} x {args.words} words")
    print(
        f"{'mode':<16}{'batch':>6}{'s (median)':>12}{'sent/s':>9}{'sent/cpu-s':>12}"
        f"{'loop p99 ms':>13}{'loop max ms':>13}"
    )

    def row(mode: str, batch: int, runs: list[tuple[float, float, float, float]]) -> None:
        secs = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        worst = max(r[3] for r in runs)
        print(
            f"{mode:<16}{batch:>6}{secs:>12.2f}{len(texts) / secs:>9.0f}{len(texts) / cpu:>12.0f}"
            f"{p99:>13.1f}{worst:>13.1f}",
            flush=True,
        )

    for batch in args.batch_sizes:
        embedder = LocalEmbedder(batch_size=batch)

        async def via_port(e: LocalEmbedder = embedder) -> object:
            return await e.embed_documents(texts)

        row("embed_documents", batch, [await _timed(via_port) for _ in range(args.repeat)])
    model = probe._load().model
    for batch in args.batch_sizes:

        async def direct(b: int = batch) -> object:
            return model.encode(texts, batch_size=b, normalize_embeddings=True, show_progress_bar=False)

        row("direct (no thr)", batch, [await _timed(direct) for _ in range(args.repeat)])
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
