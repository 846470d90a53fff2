"""The ``keel`` command: ``keel dev | api | worker | slack | migrate | temporal-setup | kb | audit``,
and the API client commands of workers/client_cli.py (``chat | sessions | tools | approvals | keys``…)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from infra.logging import configure_logging
from infra.settings import Settings
from infra.tracing import configure_tracing
from workers.audit_cli import add_audit_parser, run_audit
from workers.client_cli import CLIENT_COMMANDS, add_client_parsers, run_client
from workers.kb_cli import add_kb_parser, run_kb
from workers.queues import QUEUE_GROUPS, UnknownQueueGroup, parse_queues
from workers.serving import PortInUse


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        sys.stderr.write(f"keel: invalid configuration:\n{exc}\n")
        raise SystemExit(2) from exc


def _exit(command: str, err: Exception, code: int) -> NoReturn:
    sys.stderr.write(f"keel {command}: {err}\n")
    raise SystemExit(code) from err


def _dev(args: argparse.Namespace, settings: Settings) -> None:
    from workers.dev import run_dev

    asyncio.run(run_dev(settings))


def _api(args: argparse.Namespace, settings: Settings) -> None:
    from workers.api_server import run_api

    try:
        asyncio.run(run_api(settings))
    except PortInUse as err:
        _exit("api", err, 1)


def _worker(args: argparse.Namespace, settings: Settings) -> None:
    from workers.worker_main import run_worker

    try:
        groups = parse_queues(args.queues)
    except UnknownQueueGroup as err:
        _exit("worker", err, 2)
    try:
        asyncio.run(run_worker(settings, groups))
    except PortInUse as err:
        _exit("worker", err, 1)


def _slack(args: argparse.Namespace, settings: Settings) -> None:
    from slack_app.socket_mode import SlackNotConfigured
    from workers.slack_main import run_slack

    try:
        asyncio.run(run_slack(settings))
    except SlackNotConfigured as err:
        _exit("slack", err, 2)
    except PortInUse as err:
        _exit("slack", err, 1)


def _migrate(args: argparse.Namespace, settings: Settings) -> None:
    from infra.db.migrate import apply_migrations

    if not settings.database_url:
        sys.stderr.write("keel migrate: KEEL_DATABASE_URL is not set\n")
        raise SystemExit(2)
    applied = asyncio.run(apply_migrations(settings.database_url))
    sys.stdout.write(f"applied: {', '.join(applied) or 'nothing (up to date)'}\n")


def _temporal_setup(args: argparse.Namespace, settings: Settings) -> None:
    from infra.temporal_client import connect_temporal
    from infra.temporal_setup import setup_temporal

    async def run() -> None:
        client = await connect_temporal(settings)
        await setup_temporal(
            client, settings.temporal_namespace, retention_days=settings.temporal_namespace_retention_days
        )

    asyncio.run(run())
    namespace = settings.temporal_namespace
    sys.stdout.write(f"temporal: namespace {namespace!r} ready, search attributes registered\n")


def _kb(args: argparse.Namespace, settings: Settings) -> None:
    raise SystemExit(run_kb(args, settings))


def _audit(args: argparse.Namespace, settings: Settings) -> None:
    raise SystemExit(run_audit(args, settings))


def _client(args: argparse.Namespace, settings: Settings) -> None:
    raise SystemExit(run_client(args))


def _version() -> str:
    try:
        return f"keel {version('keel')} (keel-sdk {version('keel-sdk')})"
    except PackageNotFoundError:
        return "keel (not installed)"


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], None]] = {
    "dev": _dev,
    "api": _api,
    "worker": _worker,
    "slack": _slack,
    "migrate": _migrate,
    "temporal-setup": _temporal_setup,
    "kb": _kb,
    "audit": _audit,
    **dict.fromkeys(CLIENT_COMMANDS, _client),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="keel", description="Keel: durable enterprise agents on Temporal")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run the whole platform on this machine (embedded engines)")
    sub.add_parser("api", help="run the API server")
    worker = sub.add_parser("worker", help="run the workers (all task-queue groups, or --queues)")
    worker.add_argument(
        "--queues",
        default=None,
        metavar="GROUPS",
        help=f"comma-separated task-queue groups to run: {', '.join(QUEUE_GROUPS)} (default: all)",
    )
    sub.add_parser("slack", help="connect the Slack bot over Socket Mode (KEEL_SLACK_APP_TOKEN)")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser(
        "temporal-setup",
        help="create the Temporal namespace (if missing) and register Keel's search attributes",
    )
    add_kb_parser(sub)
    add_audit_parser(sub)
    add_client_parsers(sub)
    args = parser.parse_args(argv)

    settings = _settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    if args.command in ("dev", "api", "worker", "slack"):  # OTEL_* env only (docs/observability.md)
        configure_tracing(service_name=f"keel-{args.command}")
    _COMMANDS[args.command](args, settings)


if __name__ == "__main__":
    main()
