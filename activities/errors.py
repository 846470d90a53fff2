"""Turning failures into Temporal errors with a ``type`` from core.errors."""

from __future__ import annotations

import json
from datetime import timedelta

import openai
from temporalio.exceptions import ApplicationError

from core.errors import ErrorCode, KeelError


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
