"""Soak: the worker SIGKILLed at random points (seeded), at least 50 times, while people
chat; prints how many turns, messages, usage rows, audit rows and tool side effects
landed against how many should have (each exactly once).

    PYTHONPATH=$PWD .venv/bin/python -m bench.worker_kill_soak --kills 50 --users 8 --seed 1

Brings up its own Temporal dev server, a fresh Postgres database (dropped at the end),
Redis db 0, the fake OpenAI server and the counting MCP server (tests/fakes); the API
runs in this process, ``keel worker --queues chat,tools`` as a child process that the
killer restarts after every kill (tests/support/kill_soak.py). Nothing is asserted; the
exit code is 1 when a count is off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import uuid
from pathlib import Path

from pydantic import SecretStr

from bench.turn_overhead import fresh_database, temporal_dev_server
from infra.logging import configure_logging
from infra.settings import Settings
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI
from tests.support.kill_soak import run_kill_soak


async def main(args: argparse.Namespace) -> int:
    configure_logging(level="WARNING", json=False)
    async with contextlib.AsyncExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-soak-")))
        llm = stack.enter_context(FakeOpenAI(max_recorded=50))
        counter = stack.enter_context(CounterMcpServer())
        env = await stack.enter_async_context(temporal_dev_server())
        database_url = await stack.enter_async_context(fresh_database(args.postgres_url))
        run = uuid.uuid4().hex[:8]
        settings = Settings(
            env="test",
            auth_mode="dev",
            data_dir=data_dir,
            temporal_address=str(env.client.service_client.config.target_host),
            database_url=database_url,
            redis_url=args.redis_url,
            llm_base_url=llm.base_url,
            llm_api_key=SecretStr("x"),
            llm_model="fake-model",
            chat_task_queue=f"keel-chat-soak-{run}",
            tools_task_queue=f"keel-tools-soak-{run}",
            retrieval_task_queue=f"keel-retrieval-soak-{run}",
            circuit_namespace=f"keel-soak-{run}",
            qdrant_path=data_dir / "qdrant",
            log_level="WARNING",
            log_json=False,
        )
        report = await run_kill_soak(
            settings,
            llm,
            counter,
            users=args.users,
            min_turns=args.min_turns,
            kills=args.kills,
            seed=args.seed,
            tool_every=args.tool_every,
            max_alive_s=args.max_alive_s,
        )
    print(f"seed {args.seed}, {args.users} people, a tool call every {args.tool_every} turns")
    print("\n".join(report.lines()))
    return 0 if report.exactly_once else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--min-turns", type=int, default=3, help="turns per person at least")
    parser.add_argument("--tool-every", type=int, default=3, help="every n-th turn calls the tool")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-alive-s", type=float, default=3.0, help="a kill comes 0.2 s to this after ready"
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
