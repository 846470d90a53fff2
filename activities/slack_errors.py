"""Slack's failures as activity failures: a 429 retries after Slack's ``Retry-After``
(the activity's next retry delay), a permanent refusal (``channel_not_found``,
``invalid_blocks``, …) fails at once, anything else retries under the preset."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from infra.slack_web import SlackCallFailed, SlackRateLimited

RATE_LIMITED = "slack_rate_limited"
SLACK_ERROR = "slack_error"


def slack_failure(err: SlackCallFailed | SlackRateLimited) -> ApplicationError:
    if isinstance(err, SlackRateLimited):
        return ApplicationError(
            str(err), type=RATE_LIMITED, next_retry_delay=timedelta(seconds=max(err.retry_after_s, 1.0))
        )
    return ApplicationError(str(err), err.error, type=SLACK_ERROR, non_retryable=err.permanent)
