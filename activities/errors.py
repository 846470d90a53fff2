"""Turning failures into Temporal errors with a ``type`` from core.errors."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import openai
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from temporalio.exceptions import ApplicationError

from core.errors import ErrorCode, KeelError
from infra.circuit import CircuitOpen


def from_keel_error(err: KeelError) -> ApplicationError:
    return ApplicationError(err.message, type=err.code, non_retryable=not err.retryable)


def _root_causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def from_llm_failure(exc: BaseException) -> ApplicationError:
    """Classify a model call's failure: what retrying can fix and what it cannot."""
    for cause in _root_causes(exc):
        if isinstance(cause, KeelError):
            return from_keel_error(cause)
        if isinstance(cause, openai.RateLimitError):
            retry_after = cause.response.headers.get("retry-after")
            return ApplicationError(
                "the model is rate limited",
                type=ErrorCode.UPSTREAM_UNAVAILABLE,
                next_retry_delay=_seconds(retry_after),
            )
        if isinstance(cause, openai.AuthenticationError | openai.PermissionDeniedError):
            return ApplicationError(
                "the model refused Keel's credentials", type=ErrorCode.LLM_REJECTED, non_retryable=True
            )
        if isinstance(cause, openai.BadRequestError | openai.NotFoundError | openai.UnprocessableEntityError):
            return ApplicationError(
                f"the model rejected the request ({cause.status_code})",
                type=ErrorCode.LLM_REJECTED,
                non_retryable=True,
            )
        if isinstance(cause, openai.APITimeoutError):
            return ApplicationError("the model did not answer in time", type=ErrorCode.TIMEOUT)
        if isinstance(cause, openai.APIResponseValidationError | json.JSONDecodeError):
            return ApplicationError(
                "the model returned a malformed response", type=ErrorCode.LLM_BAD_RESPONSE
            )
        if isinstance(cause, openai.APIStatusError | openai.APIConnectionError):
            return ApplicationError("the model is unavailable", type=ErrorCode.UPSTREAM_UNAVAILABLE)
    return ApplicationError("the model call failed", type=ErrorCode.LLM_BAD_RESPONSE)


def _seconds(retry_after: str | None) -> timedelta | None:
    if retry_after is None:
        return None
    try:
        return timedelta(seconds=max(0.0, min(float(retry_after), 60.0)))
    except ValueError:
        return None


def circuit_open(err: CircuitOpen, what: str, *, wait: bool) -> ApplicationError:
    """``circuit_open``: "<what> is failing; try again in N s", next retry delay = time left
    open. ``wait``: Temporal retries after that delay (work nobody waits on, a Slack post);
    otherwise the retries end now (a user is waiting on the turn: it tells them, at once)."""
    return ApplicationError(
        f"{what} is failing; try again in {err.wait_s} s",
        err.dependency,
        type=ErrorCode.CIRCUIT_OPEN,
        next_retry_delay=timedelta(seconds=max(err.retry_after_s, 1.0)),
        non_retryable=not wait,
    )


def llm_unhealthy(exc: BaseException) -> bool:
    """Whether a model call's failure says the model service is unhealthy (5xx, timeout,
    connection error), not a request it refused (4xx), a rate limit or a budget."""
    for cause in _root_causes(exc):
        if isinstance(cause, KeelError | openai.RateLimitError):
            return False
        if isinstance(cause, openai.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(cause, openai.APIStatusError):
            return cause.status_code >= 500
        if isinstance(cause, httpx.TransportError | TimeoutError | ConnectionError | asyncio.TimeoutError):
            return True
    return False


def vector_unhealthy(exc: BaseException) -> bool:
    """Whether a knowledge search's failure says the vector index is unhealthy."""
    for cause in _root_causes(exc):
        if isinstance(cause, KeelError | ValueError | TypeError):
            return False
        if isinstance(cause, UnexpectedResponse):
            return cause.status_code is None or cause.status_code >= 500
        if isinstance(cause, ResponseHandlingException | httpx.TransportError | OSError | TimeoutError):
            return True
    return False
