"""Per-request cost of identification, rate limiting and the concurrency guard.

Brings up Keel's API against real services (Temporal dev server, a fresh Postgres
database, Redis) and a local EntraID-shaped OIDC issuer (tests/fakes/oidc_issuer.py,
HTTPS with its own CA, RS256 keys), then times, in the same run:

- baseline: ``GET /health/live`` (same middleware stack, no credential, never shed);
- ``GET /api/v1/auth/me`` with a dev token, an EntraID access token (signature
  checked against the cached JWKS) and an API key (a Postgres look-up by hash);
  each of these also runs the Redis sliding-window rate limit and the Redis
  concurrency guard.

It prints p50/p95 latency per credential kind, sequentially and at concurrency C,
and the ratio to the baseline measured in the same run. It never asserts on time.

    .venv/bin/python -m bench.auth_overhead --requests 400 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench.turn_overhead import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    free_port,
    fresh_database,
    serving_api,
    temporal_dev_server,
)
from infra.settings import Settings
from tests.fakes.oidc_issuer import FakeOidcIssuer


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def _stack(
    args: argparse.Namespace,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]]]]:
    async with contextlib.AsyncExitStack() as stack:
        idp = stack.enter_context(FakeOidcIssuer())
        env = await stack.enter_async_context(temporal_dev_server())
        database_url = await stack.enter_async_context(fresh_database(args.postgres_url))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-bench-auth-")))
        settings = Settings(
            env="test",
            auth_mode="dev",
            data_dir=data_dir,
            temporal_address=str(env.client.service_client.config.target_host),
            database_url=database_url,
            redis_url=args.redis_url,
            qdrant_path=data_dir / "qdrant",
            api_port=free_port(),
            log_level="WARNING",
            log_json=False,
            oidc_issuer=idp.issuer,
            oidc_jwks_url=idp.jwks_url,
            oidc_ca_bundle=idp.ca_path,
            entra_client_id=idp.client_id,
            entra_client_secret=SecretStr(idp.client_secret),
            rate_limit_per_minute=1_000_000,
        )
        await stack.enter_async_context(serving_api(settings))
        limits = httpx.Limits(max_connections=max(100, 2 * args.concurrency))
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=60, limits=limits)
        )
        dev = (await http.post("/api/v1/auth/dev-token", json={"user_id": "bench-dev"})).json()[
            "access_token"
        ]
        dev_headers = {"Authorization": f"Bearer {dev}"}
        created = await http.post(
            "/api/v1/api-keys", headers=dev_headers, json={"name": "bench", "scopes": ["use_agent"]}
        )
        credentials = {
            "dev token": dev_headers,
            "EntraID token": {"Authorization": f"Bearer {idp.issue()}"},
            "API key": {"Authorization": f"Bearer {created.json()['key']}"},
        }
        yield http, credentials


async def _measure(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], n: int, concurrency: int
) -> tuple[list[float], int]:
    samples: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        nonlocal errors
        async with sem:
            start = time.perf_counter()
            resp = await http.get(path, headers=headers)
            samples.append(time.perf_counter() - start)
            errors += resp.status_code != 200

    await asyncio.gather(*(one() for _ in range(n)))
    return samples, errors


async def _run(args: argparse.Namespace) -> None:
    async with _stack(args) as (http, credentials):
        modes: list[tuple[str, str, dict[str, str]]] = [("baseline (no auth)", "/health/live", {})]
        modes += [(name, "/api/v1/auth/me", headers) for name, headers in credentials.items()]
        for _name, path, headers in modes:  # warm-up: JWKS fetch, pools, first-call imports
            await _measure(http, path, headers, 20, 1)
        rows: list[tuple[str, int, float, float, int]] = []
        for concurrency in (1, args.concurrency):
            results: dict[str, Any] = {}
            # Interleave rounds so drift on a shared machine hits every mode alike.
            for _round in range(args.rounds):
                for name, path, headers in modes:
                    samples, errors = await _measure(
                        http, path, headers, args.requests // args.rounds, concurrency
                    )
                    entry = results.setdefault(name, ([], 0))
                    results[name] = (entry[0] + samples, entry[1] + errors)
            for name, (samples, errors) in results.items():
                rows.append((name, concurrency, _pct(samples, 50), _pct(samples, 95), errors))
        _print(args, rows)


def _print(args: argparse.Namespace, rows: list[tuple[str, int, float, float, int]]) -> None:
    print(
        f"\nKeel per-request auth cost (ms); {args.requests} requests per mode and concurrency, "
        f"{args.rounds} interleaved rounds; os.cpu_count()={os.cpu_count()}; "
        f"load avg {os.getloadavg()[0]:.2f}"
    )
    print(f"{'mode':<20} {'C':>3} {'p50':>8} {'p95':>8} {'p50/base':>9} {'p95/base':>9} {'errors':>7}")
    base = {c: (p50, p95) for name, c, p50, p95, _e in rows if name.startswith("baseline")}
    for name, c, p50, p95, errors in rows:
        b50, b95 = base[c]
        print(
            f"{name:<20} {c:>3} {p50 * 1000:>8.2f} {p95 * 1000:>8.2f} "
            f"{p50 / b50:>9.2f} {p95 / b95:>9.2f} {errors:>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="per mode and concurrency")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL; a bench DB is made")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
