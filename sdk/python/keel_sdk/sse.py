"""A Server-Sent Events decoder (the WHATWG event-stream rules), fed with bytes.

Written by hand because it must be exact for resuming: ``id:`` is kept per event
(``last_event_id`` carries over, as the spec says), ``data:`` lines join with
``\\n``, comments (``: ping``) are skipped, and a line may end in ``\\n``, ``\\r\\n``
or ``\\r`` even when that ending is split across two network reads.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None  # this event's own id: None when the event had no ``id:`` field
    retry: int | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by ``chunk``."""
        self._buffer += self._text.decode(chunk)
        events: list[ServerSentEvent] = []
        while True:
            line, ending, rest = self._split_line(self._buffer)
            if ending is None:
                break
            self._buffer = rest
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: an event without its blank line is dropped, as the spec says."""
        self._buffer += self._text.decode(b"", final=True)
        self._buffer = ""
        self._event, self._data, self._id, self._retry = "", [], None, None
        return []

    @staticmethod
    def _split_line(buffer: str) -> tuple[str, str | None, str]:
        for index, char in enumerate(buffer):
            if char == "\n":
                return buffer[:index], "\n", buffer[index + 1 :]
            if char == "\r":
                if index + 1 == len(buffer):
                    return buffer, None, ""  # maybe \r\n split across reads: wait for more
                ending = "\r\n" if buffer[index + 1] == "\n" else "\r"
                return buffer[:index], ending, buffer[index + len(ending) :]
        return buffer, None, ""

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event_id, self._id = self._id, None
        retry, self._retry = self._retry, None
        if not self._data and not self._event:
            return None
        event = ServerSentEvent(
            event=self._event or "message", data="\n".join(self._data), id=event_id, retry=retry
        )
        self._event, self._data = "", []
        return event
