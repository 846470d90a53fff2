"""``keel slack``: the Socket Mode receiver, with ``KEEL_WORKER_HEALTH_PORT`` probes
(ready while its connection to Slack is open) and ``/metrics``."""

from __future__ import annotations

from infra.settings import Settings
from slack_app.socket_mode import run_socket_mode
from workers.health_server import serving_health


async def run_slack(settings: Settings) -> None:
    state = {"now": "connecting"}

    def readiness() -> str | None:
        return None if state["now"] == "connected" else f"socket mode {state['now']}"

    def on_state(now: str) -> None:
        state["now"] = now

    async with serving_health(settings, readiness):
        await run_socket_mode(settings, on_state)
