"""Slack's Web API for the worker: one client factory, Slack's failures as Keel errors,
and a per-channel pace shared by every worker (Redis).

The SDK's own retries are off (``retry_handlers=[]``): a failed call fails its activity,
and Temporal retries it, so every attempt shows in history. A 429 becomes
:class:`SlackRateLimited` carrying ``Retry-After``, which the activity turns into its
next retry delay. A reply of ``ok: false`` is never swallowed: it raises
:class:`SlackCallFailed` with Slack's error code.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from infra.circuit import Circuit, CircuitOpen
from infra.settings import Settings

log = structlog.get_logger(__name__)

#: Slack errors that no retry can fix (a retry would post nothing, or the same refusal).
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "user_not_in_channel",
        "is_archived",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "missing_scope",
        "user_not_found",
        "users_not_found",
        "file_not_found",
        "message_not_found",
        "cant_update_message",
        "invalid_arguments",
    }
)


class SlackCallFailed(Exception):
    def __init__(self, method: str, error: str, status: int | None = None) -> None:
        super().__init__(f"Slack {method} failed: {error}")
        self.method = method
        self.error = error
        self.status = status  # the HTTP status of Slack's answer

    @property
    def permanent(self) -> bool:
        return self.error in PERMANENT_ERRORS


class SlackRateLimited(Exception):
    def __init__(self, method: str, retry_after_s: float) -> None:
        super().__init__(f"Slack {method} is rate limited; retry after {retry_after_s:g} s")
        self.method = method
        self.retry_after_s = retry_after_s


class SlackCircuitOpen(SlackRateLimited):
    """Slack's circuit is open (it kept failing): wait as a 429 waits, for the time left open."""


class SlackWebClient(AsyncWebClient):
    """The SDK's client, with the Slack circuit breaker (``KEEL_CIRCUIT_SLACK_*``) that
    :func:`slack_call` goes through when one is given."""

    circuit: Circuit | None = None


def slack_web_client(settings: Settings, circuit: Circuit | None = None) -> SlackWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = SlackWebClient(token=token, base_url=settings.slack_api_url, timeout=15, retry_handlers=[])
    client.circuit = circuit
    return client


def slack_unhealthy(exc: BaseException) -> bool:
    """What counts against Slack's circuit: its 5xx, timeouts and connection failures; never
    a refusal of ours (``ok: false`` with a 200, a 4xx) or a 429 (that is pacing, not an outage)."""
    if isinstance(exc, SlackCallFailed):
        return exc.status is not None and exc.status >= 500
    return isinstance(exc, TimeoutError | aiohttp.ClientError | OSError)


async def slack_call(client: AsyncWebClient, method: str, **params: Any) -> dict[str, Any]:
    """``client.<method>(**params)`` (``method`` as Slack names it, ``chat.postMessage``);
    Slack's reply data, or :class:`SlackCallFailed` / :class:`SlackRateLimited` (an open
    circuit is :class:`SlackCircuitOpen`, one of those)."""
    circuit = getattr(client, "circuit", None)
    if circuit is None:
        return await _slack_call(client, method, **params)
    try:
        async with circuit.guard(slack_unhealthy):
            return await _slack_call(client, method, **params)
    except CircuitOpen as exc:
        raise SlackCircuitOpen(method, exc.retry_after_s) from exc


async def _slack_call(client: AsyncWebClient, method: str, **params: Any) -> dict[str, Any]:
    try:
        response = (
            await client.api_call(method, json=params)
            if _json(method)
            else await client.api_call(method, params=params)
        )
    except SlackApiError as err:
        status = getattr(err.response, "status_code", None)
        if status == 429:
            retry_after = float(
                err.response.headers.get("Retry-After", err.response.headers.get("retry-after", 1))
            )
            raise SlackRateLimited(method, retry_after) from err
        error = (
            str(err.response.get("error", "unknown_error")) if err.response is not None else "unknown_error"
        )
        log.warning("slack.call_failed", method=method, error=error, status=status)
        raise SlackCallFailed(method, error, status if isinstance(status, int) else None) from err
    data: dict[str, Any] = dict(response.data) if isinstance(response.data, dict) else {}
    return data


def _json(method: str) -> bool:
    # Slack takes JSON bodies for the write methods (blocks, metadata); reads take form params.
    return method.startswith(("chat.", "assistant."))


class ChannelPacer:
    """About one post per channel per ``interval_s`` across every worker: before each
    write, take the channel's slot (``SET NX PX``) or wait for it to free."""

    def __init__(self, redis: aioredis.Redis, *, interval_s: float) -> None:
        self._redis = redis
        self._interval_ms = int(interval_s * 1000)

    async def wait(self, channel_id: str, *, deadline_s: float = 30.0) -> None:
        if self._interval_ms <= 0:
            return
        key = f"keel:slack:pace:{channel_id}"
        give_up = time.monotonic() + deadline_s
        while True:
            if await self._redis.set(key, "1", px=self._interval_ms, nx=True):
                return
            if time.monotonic() >= give_up:
                return  # Slack's own 429 is the last word; we only smooth the rate
            ttl_ms = await self._redis.pttl(key)
            await asyncio.sleep(max(ttl_ms, 20) / 1000)
