"""The time budget of one parse: a deadline the parsers check as they go.

A parse runs in a worker thread (``asyncio.to_thread``), which cannot be
interrupted from outside, so the parsers call :meth:`Deadline.check` inside
their loops (between XML chunks, between PDF pages) and give up with
``parse_timeout`` once the budget is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.errors import ErrorCode, KeelError


class Deadline:
    """``timeout_s`` of None: no limit."""

    def __init__(self, timeout_s: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout_s = timeout_s
        self._clock = clock
        self._at = None if timeout_s is None else clock() + timeout_s

    def check(self) -> None:
        if self._at is not None and self._clock() > self._at:
            raise KeelError(
                ErrorCode.PARSE_TIMEOUT,
                f"Reading the document took longer than {self._timeout_s:g} seconds; "
                "split it into smaller files.",
            )
