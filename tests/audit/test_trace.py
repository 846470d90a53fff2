"""Trace ids from W3C ``traceparent`` headers (api/middleware.py)."""

from __future__ import annotations

import pytest

from api.middleware import trace_id_from

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
        (f"00-{TRACE}-00f067aa0ba902b7-00", TRACE),
        (f"  00-{TRACE}-00f067aa0ba902b7-01 ", TRACE),
        (f"cc-{TRACE}-00f067aa0ba902b7-01-future-field", TRACE),  # a later version, read as 00
        (f"00-{TRACE}-00f067aa0ba902b7-01-extra", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-00f067aa0ba902b7-01", None),  # forbidden version
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE.upper()}-00f067aa0ba902b7-01", None),  # upper case is invalid
        (f"00-{TRACE[:-1]}-00f067aa0ba902b7-01", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_trace_id_from_traceparent(header: str, expected: str | None) -> None:
    assert trace_id_from(header) == expected
