"""``keel slack``: the same bolt app over Socket Mode (``KEEL_SLACK_APP_TOKEN``), for
installs without inbound HTTPS. Slack delivers each event to one of an app's open
connections (at most 10 per app), so a few replicas are fine; the workflow ids still
make a redelivered event a no-op. The Slack workflows run in ``keel worker``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from infra.settings import Settings
from infra.temporal_client import connect_temporal
from slack_app.bolt_app import build_bolt_app

log = structlog.get_logger(__name__)


class SlackNotConfigured(RuntimeError):
    pass


async def run_socket_mode(settings: Settings, on_state: Callable[[str], None] | None = None) -> None:
    """Connect and serve until SIGINT/SIGTERM; ``on_state`` hears ``connected`` and ``closing``
    (``keel slack``'s readiness probe)."""
    if settings.slack_bot_token is None or settings.slack_app_token is None:
        raise SlackNotConfigured(
            "Socket Mode needs KEEL_SLACK_BOT_TOKEN (xoxb-…) and "
            "KEEL_SLACK_APP_TOKEN (xapp-…, scope connections:write)"
        )
    temporal = await connect_temporal(settings)
    app = build_bolt_app(settings, temporal)
    handler = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    log.info("slack.socket_mode_connected")
    if on_state is not None:
        on_state("connected")
    try:
        await stop.wait()
    finally:
        if on_state is not None:
            on_state("closing")
        await handler.close_async()  # type: ignore[no-untyped-call]
        log.info("slack.socket_mode_closed")
