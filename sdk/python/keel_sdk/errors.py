"""One error hierarchy for every failure the client reports.

``KeelError`` carries Keel's error body (docs/api.md "Errors"): ``status`` (HTTP, or
None when no answer came), ``code`` (stable: branch on it), ``message`` (safe to
show) and ``request_id`` (the ``X-Request-ID`` to quote in a report), plus
``retry_after`` (seconds) when the server sent ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

import httpx


class KeelError(Exception):
    """Any failure of a Keel API call."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "unknown",
        request_id: str | None = None,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.response = response

    def __str__(self) -> str:
        where = f" (HTTP {self.status}, request {self.request_id})" if self.status else ""
        return f"{self.code}: {self.message}{where}"


class APIConnectionError(KeelError):
    """No answer: the connection failed or broke (``status`` is None)."""


class APITimeoutError(APIConnectionError):
    """The client's own timeout expired before an answer came."""


class APIStatusError(KeelError):
    """Keel answered with an error status (4xx/5xx)."""


class BadRequestError(APIStatusError):
    """400 (``malformed_json``)."""


class AuthenticationError(APIStatusError):
    """401: no, bad or expired credential (``unauthenticated``, ``invalid_token``, ``token_expired``)."""


class PermissionDeniedError(APIStatusError):
    """403: ``forbidden``, ``insufficient_scope``, ``policy_denied``, ``separation_of_duties``…"""


class NotFoundError(APIStatusError):
    """404: ``not_found``, ``session_not_found``, ``document_not_found``… (also someone else's)."""


class ConflictError(APIStatusError):
    """409: ``stale_request`` (e.g. an approval already decided), ``cancelled``."""


class PayloadTooLargeError(APIStatusError):
    """413: ``message_too_large``, ``file_too_large``."""


class UnprocessableEntityError(APIStatusError):
    """422 (and 415): ``invalid_request``, ``empty_message``, ``invalid_text``, ``unsupported_type``…"""


class RateLimitError(APIStatusError):
    """429: ``rate_limited``, ``session_busy``, ``ingest_busy`` (see ``retry_after``)."""


class InternalServerError(APIStatusError):
    """5xx: ``internal_error``, ``upstream_unavailable``, ``overloaded``, ``timeout``…"""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnprocessableEntityError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def retry_after_s(headers: httpx.Headers) -> float | None:
    """``Retry-After`` (Keel sends seconds) or ``retry-after-ms``, as seconds; None when absent or bad."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: Keel never sends one


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The ``KeelError`` for an error answer, from Keel's ``{"error": {...}}`` body."""
    status = response.status_code
    code = "unknown"
    message = f"HTTP {status} {response.reason_phrase}".strip()
    request_id = response.headers.get("x-request-id")
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        request_id = str(error.get("request_id") or request_id or "") or None
    cls = _BY_STATUS.get(status, InternalServerError if status >= 500 else APIStatusError)
    return cls(
        message,
        status=status,
        code=code,
        request_id=request_id,
        retry_after=retry_after_s(response.headers),
        response=response,
    )
