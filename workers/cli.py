"""The ``keel`` command: ``keel dev | api | worker | slack | migrate | kb | audit``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from infra.logging import configure_logging
from infra.settings import Settings
from infra.tracing import configure_tracing
from workers.audit_cli import add_audit_parser, run_audit
from workers.kb_cli import add_kb_parser, run_kb


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        sys.stderr.write(f"keel: invalid configuration:\n{exc}\n")
        raise SystemExit(2) from exc


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="keel", description="Keel: durable enterprise agents on Temporal")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run the whole platform on this machine (embedded engines)")
    sub.add_parser("api", help="run the API server")
    sub.add_parser("worker", help="run the chat worker")
    sub.add_parser("slack", help="connect the Slack bot over Socket Mode (KEEL_SLACK_APP_TOKEN)")
    sub.add_parser("migrate", help="apply database migrations")
    add_kb_parser(sub)
    add_audit_parser(sub)
    args = parser.parse_args(argv)

    settings = _settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    if args.command in ("dev", "api", "worker", "slack"):  # OTEL_* env only (docs/observability.md)
        configure_tracing(service_name=f"keel-{args.command}")
    if args.command == "dev":
        from workers.dev import run_dev

        asyncio.run(run_dev(settings))
    elif args.command == "api":
        from workers.api_server import PortInUse, run_api

        try:
            asyncio.run(run_api(settings))
        except PortInUse as err:
            sys.stderr.write(f"keel api: {err}\n")
            raise SystemExit(1) from err
    elif args.command == "worker":
        from workers.worker_main import run_worker

        asyncio.run(run_worker(settings))
    elif args.command == "slack":
        from slack_app.socket_mode import SlackNotConfigured, run_socket_mode

        try:
            asyncio.run(run_socket_mode(settings))
        except SlackNotConfigured as err:
            sys.stderr.write(f"keel slack: {err}\n")
            raise SystemExit(2) from err
    elif args.command == "migrate":
        from infra.db.migrate import apply_migrations

        if not settings.database_url:
            sys.stderr.write("keel migrate: KEEL_DATABASE_URL is not set\n")
            raise SystemExit(2)
        applied = asyncio.run(apply_migrations(settings.database_url))
        sys.stdout.write(f"applied: {', '.join(applied) or 'nothing (up to date)'}\n")
    elif args.command == "kb":
        raise SystemExit(run_kb(args, settings))
    elif args.command == "audit":
        raise SystemExit(run_audit(args, settings))


if __name__ == "__main__":
    main()
