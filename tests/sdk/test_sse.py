"""The SDK's SSE decoder on the wire format's corner cases (pure: no server)."""

from __future__ import annotations

from keel_sdk.events import MessageDelta, TurnCompleted, UnknownEvent, parse_event
from keel_sdk.sse import SSEDecoder

WIRE = (
    b": ping - 2026-01-01\r\n"
    b"id: 1-0\r\nevent: message.delta\r\n"
    b'data: {"turn_id": "t", "step": 0, "delta": "caf\xc3\xa9 "}\r\n\r\n'
    b"id: 2-0\revent: something.new\rdata: line one\rdata: line two\r\r"
    b'event: turn.completed\ndata: {"session_id": "s", "turn_id": "t", "status": "completed",'
    b' "message": {"role": "assistant", "content": "caf\xc3\xa9", "citations": []}}\n\n'
    b"event: half\ndata: never finished"
)


def _decode(chunks: list[bytes]) -> list[tuple[str, str, str | None]]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.close()
    return [(e.event, e.data, e.id) for e in events]


def test_every_split_of_the_wire_decodes_the_same() -> None:
    whole = _decode([WIRE])
    assert [name for name, _, _ in whole] == ["message.delta", "something.new", "turn.completed"]
    assert whole[1] == ("something.new", "line one\nline two", "2-0")
    assert whole[2][2] is None  # an event without id: has no id of its own
    for cut in range(1, len(WIRE)):
        assert _decode([WIRE[:cut], WIRE[cut:]]) == whole, cut
    assert _decode([bytes([b]) for b in WIRE]) == whole


def test_events_are_typed() -> None:
    decoder = SSEDecoder()
    delta, unknown, done = (parse_event(e) for e in decoder.feed(WIRE))
    assert isinstance(delta, MessageDelta) and delta.text == "café " and delta.event_id == "1-0"
    assert isinstance(unknown, UnknownEvent) and unknown.event == "something.new"
    assert isinstance(done, TurnCompleted) and done.response.message.content == "café"
    assert decoder.last_event_id == "2-0"
