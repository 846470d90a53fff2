"""Keep an activity's heartbeat going while blocking work runs in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")


async def heartbeating(work: Awaitable[T], *, every_s: float = 5.0, details: object = None) -> T:
    task = asyncio.ensure_future(work)
    while True:
        try:
            done, _ = await asyncio.wait({task}, timeout=every_s)
        except asyncio.CancelledError:
            task.cancel()  # the activity was cancelled (or timed out): stop the work too
            raise
        if done:
            return task.result()
        if details is None:
            activity.heartbeat()
        else:
            activity.heartbeat(details)
