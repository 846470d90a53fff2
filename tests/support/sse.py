"""A tiny Server-Sent Events reader for tests (parses the wire format)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: Any
    id: str | None


async def read_events(response: httpx.Response) -> AsyncIterator[Event]:
    fields: dict[str, str] = {}
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data_lines or fields.get("event"):
                raw = "\n".join(data_lines)
                yield Event(
                    event=fields.get("event", "message"),
                    data=json.loads(raw) if raw else None,
                    id=fields.get("id"),
                )
            fields, data_lines = {}, []
            continue
        if line.startswith(":"):
            continue  # comment / ping
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data_lines.append(value)
        else:
            fields[name] = value


async def collect(
    response: httpx.Response, *, until: tuple[str, ...] = ("turn.completed", "error")
) -> list[Event]:
    events: list[Event] = []
    async for event in read_events(response):
        events.append(event)
        if event.event in until:
            break
    return events
